package lab

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackboot/rackboot/admin"
)

// TestNetnsHarnessUdhcpcAgainstDnsmasq checks the harness against a known-good server:
// a client namespace behind the bridge, busybox udhcpc posing as a BIOS PXE client, and
// dnsmasq answering with a boot file. It proves the PXE-client emulation (the options
// dnsmasq logs) and the lease capture that the rackboot tests rely on.
func TestNetnsHarnessUdhcpcAgainstDnsmasq(t *testing.T) {
	Require(t, "dnsmasq", "busybox")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "harness", "10.77.0.1/24")
	dnsmasq := startDnsmasq(t, seg.NS, dir, seg.Bridge, "--no-ping",
		"--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
		"--dhcp-option=option:dns-server,10.77.0.53",
		"--dhcp-match=set:bios,option:client-arch,0",
		"--dhcp-boot=tag:bios,undionly.kpxe,,10.77.0.1")
	client, err := seg.AddClient(t, "harness-c", mustMAC(t, "52:54:00:77:02:01"))
	if err != nil {
		t.Fatal(err)
	}
	lease, err := runUdhcpc(t, client, dir, "pxe", pxeClientArgs(0)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, Tail(dnsmasq.Log, 30))
	}
	got := map[string]string{
		"router": lease["router"], "dns": lease["dns"], "subnet": lease["subnet"],
		"boot file": lease.BootFile(), "siaddr": lease["siaddr"],
	}
	want := map[string]string{
		"router": "10.77.0.1", "dns": "10.77.0.53", "subnet": "255.255.255.0",
		"boot file": "undionly.kpxe", "siaddr": "10.77.0.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}
	if ip := net.ParseIP(lease["ip"]); ip == nil || !strings.HasPrefix(ip.String(), "10.77.0.") {
		t.Errorf("lease ip = %q, want one from 10.77.0.50-99", lease["ip"])
	}
	// dnsmasq saw the PXE options the way a ROM sends them.
	WaitFor(t, 5*time.Second, "dnsmasq to log the PXE vendor class",
		FileContains(dnsmasq.Log, "vendor class: PXEClient:Arch:00000:UNDI:002001"))
	WaitFor(t, 5*time.Second, "dnsmasq to tag the client as arch 0", FileContains(dnsmasq.Log, "tags: bios"))

	// With dnsmasq gone nobody answers: the helper must report errNoLease within its
	// tries, not hang or return the earlier lease.
	dnsmasq.Stop()
	if _, err := runUdhcpc(t, client, dir, "nobody", pxeClientArgs(0)...); !errors.Is(err, errNoLease) {
		t.Errorf("udhcpc with no server: err = %v, want errNoLease", err)
	}
}

// TestNetnsHarnessCapture checks that a Capture in one namespace sees a datagram sent
// from another across the bridge, with its real destination.
func TestNetnsHarnessCapture(t *testing.T) {
	Require(t)
	t.Parallel()
	seg := newSegment(t, "cap", "10.77.0.1/24")
	client, err := seg.AddClient(t, "cap-c", mustMAC(t, "52:54:00:77:03:01"))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.IP("addr", "add", "10.77.0.20/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	cp, err := client.CaptureUDP(t, "eth0", 9999)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := seg.NS.ListenPacket("udp4", "10.77.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.ParseIP("10.77.0.20"), Port: 9999}
	WaitFor(t, 10*time.Second, "the capture to see a datagram to 10.77.0.20:9999", func(context.Context) (bool, error) {
		// Resent each poll: the first may go out before ARP resolves.
		if _, err := conn.WriteTo([]byte("hello"), dst); err != nil {
			return false, err
		}
		for _, p := range cp.Packets() {
			if p.Dst.String() == "10.77.0.20:9999" && string(p.Payload) == "hello" && p.Src.Addr().String() == "10.77.0.1" {
				return true, nil
			}
		}
		return false, cp.Err()
	})
}

// TestPollReportsLastReason checks the waiter's failure message and early exit.
func TestPollReportsLastReason(t *testing.T) {
	ctx := t.Context()
	err := Poll(ctx, 300*time.Millisecond, "the thing", func(context.Context) (bool, error) {
		return false, errors.Join(ErrNotYet, errors.New("still warming up"))
	})
	if err == nil || !strings.Contains(err.Error(), "the thing") || !strings.Contains(err.Error(), "still warming up") {
		t.Errorf("Poll timeout error = %v, want it to name the wait and the last reason", err)
	}
	boom := errors.New("boom")
	err = Poll(ctx, time.Hour, "the other thing", func(context.Context) (bool, error) { return false, boom })
	if !errors.Is(err, boom) {
		t.Errorf("Poll hard error = %v, want it to wrap %v at once", err, boom)
	}
	n := 0
	if err := Poll(ctx, time.Minute, "third", func(context.Context) (bool, error) { n++; return n == 3, nil }); err != nil || n != 3 {
		t.Errorf("Poll = %v after %d calls, want nil after 3", err, n)
	}
}

// TestVMQEMUArgs pins the QEMU command lines that the boot tests showed to work (see the
// Firmware docs): a change here should be re-checked with TestQEMUStandinNetboot. The
// devices carry ids and no bootindex: StartVM and the lab BMCs add the boot order.
func TestVMQEMUArgs(t *testing.T) {
	common := []string{"qemu-system-x86_64", "-name", "vm", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-nodefaults", "-vga", "std", "-display", "none", "-serial", "file:/l/vm.serial", "-monitor", "none",
		"-no-reboot", "-netdev", "tap,id=net0,ifname=tap1,script=no,downscript=no"}
	pflash := []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=/l/vars.fd"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	base := VM{Name: "vm", MAC: "52:54:00:AA:BB:CC", Tap: "tap1", SerialLog: "/l/vm.serial"}
	with := func(f func(*VM)) VM { v := base; f(&v); return v }
	tests := []struct {
		name    string
		vm      VM
		want    []string
		wantErr string
	}{
		{"seabios", with(func(v *VM) { v.Firmware = SeaBIOS }), cat(common,
			[]string{"-machine", "pc,graphics=off", "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0"}), ""},
		{"seabios e1000 uuid disk", with(func(v *VM) {
			v.Firmware, v.NIC, v.UUID, v.Disk, v.MemoryMB = SeaBIOS, "e1000", "8f6cbd2c-5fa4-4d6a-9a7b-3b2f1e0d0c0b", "/l/d.qcow2", 1024
		}), cat([]string{"qemu-system-x86_64", "-name", "vm", "-accel", "tcg", "-m", "1024"}, common[7:],
			[]string{"-uuid", "8f6cbd2c-5fa4-4d6a-9a7b-3b2f1e0d0c0b", "-machine", "pc,graphics=off",
				"-device", "e1000,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0", "-drive", "if=none,id=disk0drv,format=qcow2,cache=unsafe,file=/l/d.qcow2",
				"-device", "virtio-blk-pci,drive=disk0drv,id=disk0"}), ""},
		{"ovmf ipxe rom", with(func(v *VM) { v.Firmware = OVMFIPXE }), cat(common, []string{"-machine", "q35"}, pflash,
			[]string{"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0"}), ""},
		{"ovmf native pxe", with(func(v *VM) { v.Firmware = OVMFPXE }), cat(common, []string{"-machine", "q35"}, pflash,
			[]string{"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0,romfile="}), ""},
		{"ovmf http boot", with(func(v *VM) { v.Firmware = OVMFHTTP }), cat(common, []string{"-machine", "q35"}, pflash,
			[]string{"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
				"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0,romfile="}), ""},
		{"direct kernel", with(func(v *VM) { v.Firmware, v.Kernel, v.Initrd, v.Append = SeaBIOS, "/k", "/i", "console=ttyS0" }),
			cat(common, []string{"-machine", "pc,graphics=off", "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0",
				"-kernel", "/k", "-append", "console=ttyS0", "-initrd", "/i"}), ""},
		{"seabios second nic", with(func(v *VM) {
			v.Firmware, v.ExtraNICs = SeaBIOS, []ExtraNIC{{MAC: "52:54:00:AA:BB:CD", Tap: "tap2"}}
		}), cat(common, []string{"-machine", "pc,graphics=off", "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc,id=nic0",
			"-netdev", "tap,id=net1,ifname=tap2,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=net1,mac=52:54:00:aa:bb:cd,id=nic1,romfile="}), ""},
		{"second nic without tap", with(func(v *VM) { v.Firmware, v.ExtraNICs = SeaBIOS, []ExtraNIC{{MAC: "52:54:00:AA:BB:CD"}} }), nil, "nic1 has no tap"},
		{"native pxe e1000 refused", with(func(v *VM) { v.Firmware, v.NIC = OVMFPXE, "e1000" }), nil, "OVMF has no e1000 driver"},
		{"bad firmware", with(func(v *VM) { v.Firmware = "coreboot" }), nil, "firmware"},
		{"bad mac", with(func(v *VM) { v.Firmware, v.MAC = SeaBIOS, "zz" }), nil, "MAC"},
		{"no tap", with(func(v *VM) { v.Firmware, v.Tap = SeaBIOS, "" }), nil, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := ""
			if tt.vm.UEFI() {
				vars = "/l/vars.fd"
			}
			got, err := tt.vm.QEMUArgs(vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("QEMUArgs error = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("QEMUArgs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCreatorPID checks how SweepStale reads a namespace name.
func TestCreatorPID(t *testing.T) {
	for _, tt := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"rb123-abcdef-srv", 123, true},
		{"rb1-x", 1, true},
		{"rbx-1", 0, false},
		{"other123-a", 0, false},
		{"rb123", 0, false},
		{"rb-5-a", 0, false},
	} {
		pid, ok := creatorPID(tt.name)
		if pid != tt.pid || ok != tt.ok {
			t.Errorf("creatorPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.ok)
		}
	}
}

// TestInOrder checks the timeline matcher the boot tests rely on: steps must appear in
// order, with exact field values, other events in between allowed.
func TestInOrder(t *testing.T) {
	ev := func(typ string, kv ...string) admin.Event {
		f := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			f[kv[i]] = kv[i+1]
		}
		return admin.Event{Type: typ, Fields: f}
	}
	evs := []admin.Event{
		ev("dhcp.offer", "ip", "10.0.0.1"), ev("tftp.read", "file", "snponly.efi", "outcome", "failed"),
		ev("tftp.read", "file", "snponly.efi", "outcome", "ok"), ev("http.script"), ev("boot.phonehome"),
	}
	tftpOK := eventStep{Type: "tftp.read", Fields: map[string]string{"file": "snponly.efi", "outcome": "ok"}}
	for _, tt := range []struct {
		name  string
		steps []eventStep
		ok    bool
	}{
		{"all in order with gaps", []eventStep{{Type: "dhcp.offer"}, tftpOK, {Type: "boot.phonehome"}}, true},
		{"field value must match", []eventStep{{Type: "dhcp.offer", Fields: map[string]string{"ip": "10.0.0.2"}}}, false},
		{"order matters", []eventStep{{Type: "http.script"}, tftpOK}, false},
		{"missing type", []eventStep{{Type: "dhcp.ack"}}, false},
		{"repeated step needs two events", []eventStep{{Type: "http.script"}, {Type: "http.script"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := inOrder(evs, tt.steps); (err == nil) != tt.ok {
				t.Errorf("inOrder = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
