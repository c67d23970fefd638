package metadata

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	butane "github.com/coreos/butane/config"
	butanecommon "github.com/coreos/butane/config/common"
	ignition "github.com/coreos/ignition/v2/config"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// Documents are rendered by pure functions of the host, its provisioning and the
// server URL, so that they can be checked against golden files.

// Input is what a host's documents depend on.
type Input struct {
	Host inventory.Host
	// BaseURL is this host's NoCloud-net URL, ending in "/" (SERVER/metadata/TOKEN/).
	BaseURL string
	// BootMAC is the NIC the host provisioned through (network-config matches it).
	BootMAC string
}

// InstanceID is the cloud-init instance-id: the host and its provisioning, so a
// re-provisioned host is a new instance and runs its user-data again, while reboots of
// the same provisioning are not.
func InstanceID(h inventory.Host) string {
	id := h.ID
	if h.Provision != nil && h.Provision.ID != "" {
		id += "-" + h.Provision.ID
	}
	return id
}

// Hostname is the host's local-hostname: its hostname, else its ID.
func Hostname(h inventory.Host) string {
	if h.Hostname != "" {
		return h.Hostname
	}
	return h.ID
}

// MetaData renders NoCloud meta-data: instance-id and local-hostname for cloud-init,
// and for templates and scripts (cloud-init's ds.meta_data) the host's labels, the
// provisioning's metadata and rackboot's own facts about the host.
func MetaData(in Input) ([]byte, error) {
	h := in.Host
	rb := map[string]any{"host-id": h.ID}
	if p := h.Provision; p != nil {
		rb["image"] = p.Image
		rb["provision-id"] = p.ID
	}
	if in.BootMAC != "" {
		rb["boot-mac"] = in.BootMAC
	}
	doc := map[string]any{
		"instance-id":    InstanceID(h),
		"local-hostname": Hostname(h),
		"rackboot":       rb,
	}
	if len(h.Labels) > 0 {
		doc["labels"] = h.Labels
	}
	if h.Provision != nil && len(h.Provision.Metadata) > 0 {
		doc["metadata"] = h.Provision.Metadata
	}
	return yaml.Marshal(doc)
}

// PhoneHomeURL is where the installed system reports that cloud-init finished.
func PhoneHomeURL(base string) string { return base + "phonehome" }

// VendorData renders NoCloud vendor-data: cloud-init's phone_home module, which runs at
// the end of cloud-init's final stage (after the user's scripts) and POSTs to rackboot,
// so "provisioned" means cloud-init ran. User-data may turn vendor-data off
// (vendor_data: {enabled: false}); such a host never phones home and its provisioning
// times out.
func VendorData(in Input) []byte {
	return []byte(`#cloud-config
# rackboot: tell rackboot when cloud-init has finished on this host.
phone_home:
  url: ` + PhoneHomeURL(in.BaseURL) + `
  post: [instance_id, hostname, fqdn]
  tries: 30
`)
}

// NetworkConfig renders network-config version 2: the network decided when the host's
// plan was made (Provision.InstallNetwork: its spec, or its reserved address as a
// static configuration), else DHCP on the NIC the host booted from, matched by MAC so
// the interface name does not matter.
func NetworkConfig(in Input) ([]byte, error) {
	if n := installNetwork(in.Host); n != nil {
		return netconfig.CloudInit(*n)
	}
	mac := in.BootMAC
	if mac == "" && len(in.Host.MACs) > 0 {
		mac = in.Host.MACs[0]
	}
	doc := map[string]any{
		"version": 2,
		"ethernets": map[string]any{
			"boot": map[string]any{
				"match": map[string]any{"macaddress": mac},
				"dhcp4": true,
			},
		},
	}
	return yaml.Marshal(doc)
}

// emptyUserData is served to a host provisioned without user-data.
var emptyUserData = []byte("#cloud-config\n{}\n")

// UserData is the host's user-data as given, or an empty cloud-config.
func UserData(d inventory.ProvisionData) []byte {
	if len(d.UserData) == 0 {
		return emptyUserData
	}
	return d.UserData
}

// MaxConfigBytes bounds user-data, Butane and Ignition (cloud providers allow 16-64 KiB;
// a kubeadm join config with certificates is about 10 KiB).
const MaxConfigBytes = 512 << 10

// CheckUserData refuses user-data that cloud-init would reject or ignore: a
// #cloud-config that is not YAML, or a document cloud-init does not recognise, so the
// mistake shows at request time rather than as a host that never phones home.
func CheckUserData(b []byte) error {
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("user-data is %d bytes; at most %d are accepted", len(b), MaxConfigBytes)
	}
	s := string(b)
	switch {
	case strings.HasPrefix(s, "#cloud-config"):
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("user-data starts with #cloud-config but is not valid YAML: %w", err)
		}
		if v != nil {
			if _, ok := v.(map[string]any); !ok {
				return errors.New("user-data starts with #cloud-config but is not a YAML mapping")
			}
		}
		return nil
	case strings.HasPrefix(s, "#!"), strings.HasPrefix(s, "#include"), strings.HasPrefix(s, "## template: jinja"),
		strings.HasPrefix(s, "#cloud-boothook"), strings.HasPrefix(s, "#part-handler"), strings.HasPrefix(s, "#cloud-config-archive"),
		strings.HasPrefix(s, "Content-Type: multipart/"), strings.HasPrefix(s, "MIME-Version:"):
		return nil
	}
	return errors.New("user-data is not something cloud-init runs: start it with #cloud-config (YAML), #! (a script), or give MIME multipart")
}

// RenderButane translates a Butane config (variant fcos or flatcar) into Ignition
// JSON. Local file references are refused: the config is rendered on the server,
// whose files are not the operator's to embed.
func RenderButane(src []byte) ([]byte, error) {
	if len(src) > MaxConfigBytes {
		return nil, fmt.Errorf("butane config is %d bytes; at most %d are accepted", len(src), MaxConfigBytes)
	}
	out, rep, err := butane.TranslateBytes(src, butanecommon.TranslateBytesOptions{})
	if err != nil {
		msg := err.Error()
		if r := strings.TrimSpace(rep.String()); r != "" {
			msg += ": " + r
		}
		return nil, fmt.Errorf("butane: %s", msg)
	}
	if rep.IsFatal() {
		return nil, fmt.Errorf("butane: %s", strings.TrimSpace(rep.String()))
	}
	if _, err := ParseIgnition(out); err != nil {
		return nil, fmt.Errorf("butane produced an Ignition config rackboot cannot use: %w", err)
	}
	return out, nil
}

// ParseIgnition validates an Ignition config (spec 3.x) and returns it as a generic
// document, so rackboot can add its phone-home unit whatever the spec version.
func ParseIgnition(b []byte) (map[string]any, error) {
	if len(b) > MaxConfigBytes {
		return nil, fmt.Errorf("ignition config is %d bytes; at most %d are accepted", len(b), MaxConfigBytes)
	}
	_, rep, err := ignition.Parse(b)
	if err != nil {
		msg := err.Error()
		if r := strings.TrimSpace(rep.String()); r != "" {
			msg += ": " + r
		}
		return nil, fmt.Errorf("ignition: %s", msg)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("ignition: %w", err)
	}
	return doc, nil
}

// PhoneHomeUnit is the systemd unit rackboot adds to a host's Ignition config: after
// the first boot with the network up it POSTs to the phone-home URL, so an Ignition
// host reports "booted and configured" the way cloud-init's phone_home does.
const PhoneHomeUnit = "rackboot-phonehome.service"

func phoneHomeUnit(url string) string {
	return `[Unit]
Description=Tell rackboot this host booted its provisioned system
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/var/lib/rackboot-phoned-home

[Service]
Type=oneshot
ExecStart=/usr/bin/curl -fsS --retry 30 --retry-delay 5 --retry-all-errors -X POST ` + url + `
ExecStartPost=/usr/bin/touch /var/lib/rackboot-phoned-home

[Install]
WantedBy=multi-user.target
`
}

// Ignition returns the host's Ignition config with rackboot's phone-home unit added.
func Ignition(in Input, d inventory.ProvisionData) ([]byte, error) {
	doc, err := ParseIgnition(d.Ignition)
	if err != nil {
		return nil, err
	}
	systemd, _ := doc["systemd"].(map[string]any)
	if systemd == nil {
		systemd = map[string]any{}
	}
	units, _ := systemd["units"].([]any)
	units = slices.DeleteFunc(slices.Clone(units), func(u any) bool {
		m, _ := u.(map[string]any)
		return m != nil && m["name"] == PhoneHomeUnit
	})
	units = append(units, map[string]any{
		"name":     PhoneHomeUnit,
		"enabled":  true,
		"contents": phoneHomeUnit(PhoneHomeURL(in.BaseURL)),
	})
	systemd["units"] = units
	doc["systemd"] = systemd
	if n := installNetwork(in.Host); n != nil {
		if err := addNetworkdFiles(doc, *n); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// installNetwork is the network the host's provisioning installs, or nil for DHCP on
// the boot NIC.
func installNetwork(h inventory.Host) *netconfig.Spec {
	if h.Provision == nil {
		return nil
	}
	return h.Provision.InstallNetwork
}

// addNetworkdFiles adds the systemd-networkd units of n to an Ignition config's
// storage.files. A file the operator's config already writes at the same path is
// theirs: it is kept and ours dropped.
func addNetworkdFiles(doc map[string]any, n netconfig.Spec) error {
	files, err := netconfig.Networkd(n)
	if err != nil {
		return err
	}
	storage, _ := doc["storage"].(map[string]any)
	if storage == nil {
		storage = map[string]any{}
	}
	list, _ := storage["files"].([]any)
	taken := map[string]bool{}
	for _, f := range list {
		if m, ok := f.(map[string]any); ok {
			if p, ok := m["path"].(string); ok {
				taken[p] = true
			}
		}
	}
	for _, f := range files {
		if taken[f.Path] {
			continue
		}
		list = append(list, map[string]any{
			"path":      f.Path,
			"mode":      int(f.Mode),
			"overwrite": true,
			"contents":  map[string]any{"source": "data:;base64," + base64.StdEncoding.EncodeToString([]byte(f.Contents))},
		})
	}
	storage["files"] = list
	doc["storage"] = storage
	return nil
}
