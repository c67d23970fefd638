package bmc

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		in        string
		want      Endpoint
		canonical string
	}{
		{"ipmi://admin@10.0.0.5", Endpoint{Protocol: ProtocolIPMI, Host: "10.0.0.5", Port: 623, User: "admin", CipherSuite: 3}, "ipmi://admin@10.0.0.5:623"},
		{"ipmi://admin@10.0.0.5:6230?cipher=17", Endpoint{Protocol: ProtocolIPMI, Host: "10.0.0.5", Port: 6230, User: "admin", CipherSuite: 17}, "ipmi://admin@10.0.0.5:6230?cipher=17"},
		{"IPMI://ADMIN@bmc-1.rack1.example/", Endpoint{Protocol: ProtocolIPMI, Host: "bmc-1.rack1.example", Port: 623, User: "ADMIN", CipherSuite: 3}, "ipmi://ADMIN@bmc-1.rack1.example:623"},
		{"ipmi://root@[fd77::5]:623", Endpoint{Protocol: ProtocolIPMI, Host: "fd77::5", Port: 623, User: "root", CipherSuite: 3}, "ipmi://root@[fd77::5]:623"},
		{"redfish://root@10.0.0.6", Endpoint{Protocol: ProtocolRedfish, Scheme: "https", Host: "10.0.0.6", Port: 443, User: "root", Auth: AuthSession}, "redfish://root@10.0.0.6:443"},
		{"redfish+https://root@10.0.0.6:8443?insecure=1&auth=basic&system=System.Embedded.1", Endpoint{Protocol: ProtocolRedfish, Scheme: "https", Host: "10.0.0.6", Port: 8443, User: "root", Insecure: true, Auth: AuthBasic, System: "System.Embedded.1"}, "redfish://root@10.0.0.6:8443?auth=basic&insecure=1&system=System.Embedded.1"},
		{"redfish+http://admin@127.0.0.1:8000", Endpoint{Protocol: ProtocolRedfish, Scheme: "http", Host: "127.0.0.1", Port: 8000, User: "admin", Auth: AuthSession}, "redfish+http://admin@127.0.0.1:8000"},
		{"redfish+http://admin@lab?system=System%202", Endpoint{Protocol: ProtocolRedfish, Scheme: "http", Host: "lab", Port: 80, User: "admin", Auth: AuthSession, System: "System 2"}, "redfish+http://admin@lab:80?system=System+2"},
		{"redfish://user%40corp@10.0.0.6?insecure=0", Endpoint{Protocol: ProtocolRedfish, Scheme: "https", Host: "10.0.0.6", Port: 443, User: "user@corp", Auth: AuthSession}, "redfish://user%40corp@10.0.0.6:443"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseURL(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			if s := got.String(); s != c.canonical {
				t.Fatalf("String() = %q, want %q", s, c.canonical)
			}
			// The canonical form parses back to the same endpoint.
			again, err := ParseURL(got.String())
			if err != nil || !cmp.Equal(again, got) {
				t.Fatalf("canonical form does not round-trip: %+v, %v", again, err)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	cases := []struct {
		in   string
		want string // the fix the message must name
	}{
		{"", "write it as ipmi://USER@HOST"},
		{"10.0.0.5", "no protocol"},
		{"http://admin@10.0.0.5", `unknown BMC protocol "http": use ipmi://, redfish:// (HTTPS) or redfish+http://`},
		{"idrac://root@10.0.0.5", `unknown BMC protocol "idrac"`},
		{"ipmi://10.0.0.5", "no user: put the BMC user before '@'"},
		{"ipmi://admin:s3cret@10.0.0.5", "carries a password: remove it"},
		{"ipmi://admin@", "no host"},
		{"ipmi://admin@10.0.0.5:0", `port "0" is not 1-65535`},
		{"ipmi://admin@10.0.0.5:99999", "is not 1-65535"},
		{"ipmi://admin@10.0.0.5:", "empty port"},
		{"ipmi://admin@10.0.0.5?cipher=18", "cipher=18: give an RMCP+ cipher suite 0-17"},
		{"ipmi://admin@10.0.0.5?cipher=x", "cipher=x"},
		{"ipmi://admin@10.0.0.5?insecure=1", `unknown option "insecure": ipmi:// accepts cipher=N`},
		{"ipmi://admin@10.0.0.5?cipher=3&cipher=17", "given 2 times"},
		{"redfish://admin@10.0.0.5?auth=digest", "auth=session (Redfish sessions, the default) or auth=basic"},
		{"redfish://admin@10.0.0.5?insecure=maybe", "use insecure=1 or insecure=0"},
		{"redfish+http://admin@10.0.0.5?insecure=1", "uses no TLS: drop it"},
		{"redfish://admin@10.0.0.5?cipher=3", "redfish URLs accept insecure=1, auth=session|basic and system=NAME"},
		{"redfish://admin@10.0.0.5/redfish/v1", "unexpected path"},
		{"redfish://admin@10.0.0.5#frag", "unexpected path or fragment"},
		{"ipmi://admin@bad_host!", "neither an IP address nor a DNS name"},
		{"ipmi://admin@[fe80::1%25eth0]", "IPv6 zones are not supported"},
		{"ipmi://ad min@10.0.0.5", "whitespace"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := ParseURL(c.in)
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("err = %v, want ErrInvalidURL", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error repeats the password: %q", err)
			}
		})
	}
}

func TestPasswordNeverFormats(t *testing.T) {
	const pw = "pw-Format-91b2"
	tg := Target{Endpoint: MustParseURL("ipmi://admin@10.0.0.5"), Password: Password(pw)}
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "target", tg, "password", tg.Password, "any", any(tg))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "target", tg, "password", tg.Password)
	js, _ := json.Marshal(tg)
	outs := []string{
		fmt.Sprint(tg), fmt.Sprintf("%v %+v %#v %s %q", tg, tg, tg, tg, tg),
		fmt.Sprintf("%v %+v %#v %s %q %x", tg.Password, tg.Password, tg.Password, tg.Password, tg.Password, tg.Password),
		string(js), logs.String(),
	}
	for _, o := range outs {
		if strings.Contains(o, pw) || strings.Contains(o, fmt.Sprintf("%x", pw)) {
			t.Fatalf("password leaked: %s", o)
		}
	}
	if !strings.Contains(logs.String(), "ipmi://admin@10.0.0.5:623") {
		t.Fatalf("the log does not show the endpoint: %s", logs.String())
	}
	if tg.Password.Reveal() != pw {
		t.Fatal("Reveal lost the password")
	}
}

func TestParsePowerStateAndNames(t *testing.T) {
	for in, want := range map[string]PowerState{
		"Chassis Power is on\n": PowerOn, "Chassis Power is off": PowerOff, "On": PowerOn, "Off": PowerOff,
		"PoweringOn": PowerOff, "PoweringOff": PowerOn, "": PowerUnknown, "Paused": PowerUnknown,
	} {
		if got := parsePowerState(in); got != want {
			t.Errorf("parsePowerState(%q) = %s, want %s", in, got, want)
		}
	}
	for _, a := range PowerActions {
		if got, err := ParsePowerAction(string(a)); err != nil || got != a {
			t.Errorf("ParsePowerAction(%s) = %s, %v", a, got, err)
		}
	}
	if _, err := ParsePowerAction("status"); err == nil || !strings.Contains(err.Error(), "use on, off (hard), soft") {
		t.Errorf("ParsePowerAction(status): %v", err)
	}
	if _, err := ParseBootDevice("cdrom"); err == nil || !strings.Contains(err.Error(), "use pxe") {
		t.Errorf("ParseBootDevice(cdrom): %v", err)
	}
	if s := (BootOptions{Device: BootDisk, Persistent: true}).String(); s != "disk persistent legacy" {
		t.Errorf("BootOptions.String = %q", s)
	}
}

func TestPresencePingCodec(t *testing.T) {
	ping := encodePresencePing(0x21)
	want := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x21, 0x00, 0x00}
	if d := cmp.Diff(want, ping); d != "" {
		t.Fatalf("ping (-want +got):\n%s", d)
	}
	// A pong as ipmi_sim sends it: 16 bytes of data, IPMI supported.
	pongBytes := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x40, 0x21, 0x00, 0x10,
		0x00, 0x00, 0x11, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x81, 0x00, 0, 0, 0, 0, 0, 0}
	p, err := decodePresencePong(pongBytes)
	if err != nil || p.tag != 0x21 || !p.ipmi {
		t.Fatalf("pong = %+v, %v", p, err)
	}
	for name, b := range map[string][]byte{
		"short":      pongBytes[:8],
		"ping":       ping,
		"not asf":    append([]byte{0x06, 0x00, 0xff, 0x07}, pongBytes[4:]...),
		"other iana": append(append([]byte(nil), pongBytes[:4]...), append([]byte{0, 0, 0, 1}, pongBytes[8:]...)...),
	} {
		if _, err := decodePresencePong(b); err == nil {
			t.Errorf("%s decoded as a pong", name)
		}
	}
}
