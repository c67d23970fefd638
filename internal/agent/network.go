package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netlink"
)

// VendorClass is the DHCP option 60 the agent sends, so the server (and its logs) can
// tell the agent's DHCP from the firmware's.
const VendorClass = "rackboot-agent"

// nicByMAC returns the name of the interface with mac under root/sys/class/net, or ""
// when there is none yet. An empty mac takes the first Ethernet NIC with a device.
func nicByMAC(root, mac string) string {
	ents, _ := os.ReadDir(filepath.Join(root, "sys/class/net"))
	for _, e := range ents {
		d := filepath.Join(root, "sys/class/net", e.Name())
		if readTrim(filepath.Join(d, "type")) != "1" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "device")); err != nil {
			continue
		}
		if mac == "" || strings.EqualFold(readTrim(filepath.Join(d, "address")), mac) {
			return e.Name()
		}
	}
	return ""
}

// lease is the address configuration DHCP gave.
type lease struct {
	IP      net.IP
	Mask    net.IPMask
	Router  net.IP
	DNS     []net.IP
	Domain  string
	Server  net.IP
	Expires time.Duration
}

func (l lease) String() string {
	ones, _ := l.Mask.Size()
	return fmt.Sprintf("%s/%d router=%v server=%v dns=%v", l.IP, ones, l.Router, l.Server, l.DNS)
}

// configureNetwork brings lo and the NIC up, takes a DHCP lease on the NIC and applies
// it with netlink: address, default route, resolv.conf under root.
func configureNetwork(ctx context.Context, log *slog.Logger, root, ifname string, uefi bool, attempts int) (lease, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return lease{}, fmt.Errorf("NIC %s: %w", ifname, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return lease{}, fmt.Errorf("bring %s up: %w", ifname, err)
	}
	// Wait (bounded) for the link: a DHCPDISCOVER sent before carrier is lost, and some
	// switch ports take seconds (spanning tree) to forward.
	carrier := filepath.Join(root, "sys/class/net", ifname, "carrier")
	for deadline := time.Now().Add(15 * time.Second); readTrim(carrier) != "1" && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	arch := iana.INTEL_X86PC
	if uefi {
		arch = iana.EFI_X86_64
	}
	var l lease
	wait := time.Second
	for attempt := 1; ; attempt++ {
		l, err = dhcpOnce(ctx, ifname, arch)
		if err == nil {
			break
		}
		if attempt >= attempts || ctx.Err() != nil {
			return lease{}, fmt.Errorf("DHCP on %s: no lease after %d attempts: %w (is a DHCP server answering on this segment?)", ifname, attempt, err)
		}
		log.Warn("DHCP failed, retrying", "iface", ifname, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return lease{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
	ones, _ := l.Mask.Size()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.IP, Mask: l.Mask}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return l, fmt.Errorf("add %s/%d to %s: %w", l.IP, ones, ifname, err)
	}
	if l.Router != nil {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router, Dst: nil}
		if err := netlink.RouteReplace(route); err != nil {
			return l, fmt.Errorf("default route via %s: %w", l.Router, err)
		}
	}
	if len(l.DNS) > 0 {
		var b strings.Builder
		if l.Domain != "" {
			fmt.Fprintf(&b, "search %s\n", l.Domain)
		}
		for _, ip := range l.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", ip)
		}
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(root, "etc/resolv.conf"), []byte(b.String()), 0o644)
		}
	}
	return l, nil
}

// dhcpOnce runs one DISCOVER-OFFER-REQUEST-ACK. It builds the messages itself rather
// than with dhcpv4.NewDiscovery: those draw the transaction ID from crypto/rand, which
// blocks until the kernel's random pool is initialised, and a machine without a
// hardware RNG (a TCG guest, old hardware) can wait minutes for that this early in
// boot. A transaction ID only has to be unlikely to collide, not secret.
func dhcpOnce(ctx context.Context, ifname string, arch iana.Arch) (lease, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return lease{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var xid dhcpv4.TransactionID
	binary.BigEndian.PutUint32(xid[:], mathrand.Uint32())
	common := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorClass)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
			dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName),
	}
	discover := newMessage(xid, append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(c.InterfaceAddr()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
	}, common...)...)
	offer, err := c.SendAndRead(ctx, c.RemoteAddr(), discover, nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return lease{}, fmt.Errorf("no offer: %w", err)
	}
	request := newMessage(xid, append([]dhcpv4.Modifier{
		dhcpv4.WithReply(offer),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier),
	}, common...)...)
	ack, err := c.SendAndRead(ctx, c.RemoteAddr(), request, nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return lease{}, fmt.Errorf("no answer to the request for %s: %w", offer.YourIPAddr, err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return lease{}, fmt.Errorf("the server refused %s (NAK: %s)", offer.YourIPAddr, ack.Message())
	}
	if ack.YourIPAddr == nil || ack.YourIPAddr.IsUnspecified() {
		return lease{}, errors.New("the DHCP ACK carries no address")
	}
	l := lease{IP: ack.YourIPAddr.To4(), Mask: ack.SubnetMask(), DNS: ack.DNS(), Domain: ack.DomainName(),
		Server: ack.ServerIdentifier(), Expires: ack.IPAddressLeaseTime(time.Hour)}
	if l.Mask == nil {
		l.Mask = l.IP.DefaultMask()
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router = r[0]
	}
	return l, nil
}

// newMessage is dhcpv4.New with a given transaction ID.
func newMessage(xid dhcpv4.TransactionID, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range mods {
		m(d)
	}
	return d
}
