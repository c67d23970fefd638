package dhcp

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/rackboot/rackboot/internal/inventory"
)

// vendorClass is what option 60 says the client is.
type vendorClass uint8

const (
	classNone vendorClass = iota
	classPXE              // "PXEClient..." (PXE ROMs, UEFI PXE, iPXE)
	classHTTP             // "HTTPClient..." (UEFI HTTP boot)
)

func (v vendorClass) String() string {
	switch v {
	case classPXE:
		return "PXEClient"
	case classHTTP:
		return "HTTPClient"
	}
	return ""
}

// client is what a request says about the machine that sent it.
type client struct {
	mac     string
	class   vendorClass
	arch    iana.Arch
	hasArch bool
	ipxe    bool
	uuid    []byte // option 97, echoed as the PXE specification asks
}

// netboot reports whether the client is a boot ROM or iPXE (and so gets boot options).
func (c client) netboot() bool { return c.class != classNone || c.ipxe }

func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr.String()}
	vc := req.Options.Get(dhcpv4.OptionClassIdentifier)
	switch {
	case bytes.HasPrefix(vc, []byte("PXEClient")):
		c.class = classPXE
	case bytes.HasPrefix(vc, []byte("HTTPClient")):
		c.class = classHTTP
	}
	// Option 93 is a list of 16-bit arch types; the first is the one in use.
	if a := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
		c.arch, c.hasArch = iana.Arch(uint16(a[0])<<8|uint16(a[1])), true
	} else if c.class != classNone {
		// Some ROMs omit option 93 but say "PXEClient:Arch:00007:UNDI:003016".
		if _, rest, ok := bytes.Cut(vc, []byte(":Arch:")); ok && len(rest) >= 5 {
			if n, err := strconv.ParseUint(string(rest[:5]), 10, 16); err == nil {
				c.arch, c.hasArch = iana.Arch(n), true
			}
		}
	}
	// iPXE sends user class "iPXE" (raw, not RFC 3004 encoded, though either matches)
	// and its feature list in option 175.
	c.ipxe = bytes.Contains(req.Options.Get(dhcpv4.OptionUserClassInformation), []byte("iPXE")) ||
		req.Options.Has(dhcpv4.OptionEtherboot)
	if u := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); len(u) > 0 {
		c.uuid = u
	}
	return c
}

// archInfo maps option 93 to what the inventory records.
func archInfo(a iana.Arch) (arch string, fw inventory.Firmware) {
	switch a {
	case iana.INTEL_X86PC:
		// Arch 0 does not say 32 or 64 bit; every server a rack provisions today is 64.
		return "x86_64", inventory.FirmwareBIOS
	case iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_64_HTTP:
		return "x86_64", inventory.FirmwareUEFI
	case iana.EFI_IA32, iana.EFI_X86_HTTP:
		return "i386", inventory.FirmwareUEFI
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return "arm64", inventory.FirmwareUEFI
	case iana.EFI_ARM32, iana.EFI_ARM32_HTTP:
		return "arm", inventory.FirmwareUEFI
	}
	return "", inventory.FirmwareUnknown
}

// archLabel is a short, bounded label for logs and events.
func archLabel(c client) string {
	if !c.hasArch {
		return ""
	}
	switch c.arch {
	case iana.INTEL_X86PC:
		return "bios"
	case iana.EFI_X86_64, iana.EFI_BC:
		return "x86_64-uefi"
	case iana.EFI_X86_64_HTTP:
		return "x86_64-uefi-http"
	case iana.EFI_ARM64:
		return "arm64-uefi"
	case iana.EFI_ARM64_HTTP:
		return "arm64-uefi-http"
	}
	return "arch-" + strconv.Itoa(int(c.arch))
}

// bootInfo is what a netboot client is told to load.
type bootInfo struct {
	file   string // TFTP file name or full URL (never with a key: events and logs show it)
	tftp   bool   // file is a TFTP name (siaddr and option 66 matter)
	script bool   // file is the iPXE script URL, which a boot key may complete
}

// bootFor picks the boot file for a netboot client; ok is false when there is nothing
// to offer it (an architecture we have no binary for).
func (h *Handler) bootFor(c client) (bootInfo, bool) {
	b := &h.cfg.Boot
	if c.ipxe {
		// iPXE is already running: hand it the script, not iPXE again (boot loop).
		return bootInfo{file: h.scriptURL(c.mac), script: true}, true
	}
	http := c.class == classHTTP
	arch := c.arch
	switch {
	case c.hasArch:
	case http:
		arch = iana.EFI_X86_64_HTTP // only UEFI does HTTP boot
	default:
		arch = iana.INTEL_X86PC // PXE ROMs that predate option 93 are BIOS
	}
	var name string
	switch arch {
	case iana.INTEL_X86PC:
		name = b.BIOSFile
	case iana.EFI_X86_64, iana.EFI_BC:
		name = b.UEFIFile
		if http {
			name = b.HTTPBootFile
		}
	case iana.EFI_X86_64_HTTP:
		name, http = b.HTTPBootFile, true
	case iana.EFI_ARM64:
		name = b.ARM64File
	case iana.EFI_ARM64_HTTP:
		name, http = b.ARM64File, true
	}
	if name == "" {
		return bootInfo{}, false
	}
	if http {
		return bootInfo{file: b.HTTPBaseURL + "/ipxe/bin/" + name}, true
	}
	return bootInfo{file: name, tftp: true}, true
}

func (h *Handler) scriptURL(mac string) string {
	return h.cfg.Boot.HTTPBaseURL + "/ipxe/boot.ipxe?mac=" + mac
}

// pxeVendorOptions is option 43 with PXE_DISCOVERY_CONTROL (6) = 8: "boot the file in
// this offer, no boot server discovery, no menu", then End.
const pxeVendorOptions = "\x06\x01\x08\xff"

// addBootOptions writes the netboot fields into resp; key, when not empty, completes the
// iPXE script URL (the reply must then go to the client's MAC only).
func (h *Handler) addBootOptions(resp *dhcpv4.DHCPv4, c client, bi bootInfo, key string) {
	file := bi.file
	if bi.script && key != "" {
		file += "&key=" + key
	}
	if bi.tftp {
		resp.ServerIPAddr = h.tftpIP
		resp.UpdateOption(dhcpv4.OptTFTPServerName(h.tftpName))
	} else {
		// The boot file is a URL on ServerIP's HTTP server; siaddr still names us as the
		// next server for firmware that insists on one.
		resp.ServerIPAddr = h.serverIP
	}
	// The BOOTP file field holds 127 bytes; longer URLs only fit in option 67.
	if len(file) < 128 {
		resp.BootFileName = file
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
	// UEFI HTTP boot ignores offers without option 60 "HTTPClient".
	addPXEClass(resp, c)
}

// addPXEClass marks a reply as a PXE (or HTTP boot) server's, without a boot file.
func addPXEClass(resp *dhcpv4.DHCPv4, c client) {
	switch c.class {
	case classPXE:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte(pxeVendorOptions)))
	case classHTTP:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	}
	if c.uuid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, c.uuid))
	}
}

// vendorClassString is option 60 as sent, trimmed for logs.
func vendorClassString(req *dhcpv4.DHCPv4) string {
	s := req.ClassIdentifier()
	if len(s) > 48 {
		s = s[:48]
	}
	return strings.ToValidUTF8(s, "?")
}

// bootFileFor is the boot file a reply to x would carry ("" for none), for events.
func (h *Handler) bootFileFor(x *exchange) string {
	if !x.c.netboot() {
		return ""
	}
	if bi, ok := h.bootFor(x.c); ok {
		return bi.file
	}
	return ""
}
