package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace the lab creates, followed by the creating
// process's PID, so SweepStale can tell leftovers of a killed run from live ones.
const NamePrefix = "rb"

// Netns is a named network namespace (ip-netns(8)) that the lab created and will delete.
type Netns struct {
	Name string
}

// uniqueName returns rb<pid>-<random>-<role>: unique across parallel tests and across
// processes, and parseable by SweepStale.
func uniqueName(role string) (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random namespace suffix: %w", err)
	}
	return fmt.Sprintf("%s%d-%s-%s", NamePrefix, os.Getpid(), hex.EncodeToString(b[:]), role), nil
}

// NewNetns creates a namespace named after role (unique, prefixed "rb"), brings its
// loopback up and registers its deletion with c. Nothing in it routes anywhere until the
// caller connects it.
func NewNetns(c Cleaner, role string) (*Netns, error) {
	name, err := uniqueName(role)
	if err != nil {
		return nil, err
	}
	if err := run("ip", "netns", "add", name); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	n := &Netns{Name: name}
	c.Cleanup(func() {
		r, _ := c.(failureReporter)
		// Everything the lab started here was stopped by teardown registered later (so
		// run earlier); whatever is left (a QEMU whose BMC died half-way through a
		// power-on) would keep the namespace, its taps and addresses alive unnamed.
		if killed, err := killProcessesIn(name); r != nil && (err != nil || len(killed) > 0) {
			r.Logf("lab: namespace %s: killed %d processes left in it %v: %v", name, len(killed), killed, err)
		}
		if err := run("ip", "netns", "del", name); err != nil && r != nil {
			r.Logf("lab: delete namespace %s: %v", name, err)
		}
	})
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// SweepStale cleans up after lab runs whose creating process is gone (a test binary or
// `make lab` killed before its teardown ran): it forces off the QEMUs of their
// BMC-managed VMs (recorded by StartBMCVM; see sweepVMs), kills whatever still runs in
// their rb<pid>-* namespaces and deletes those. It never touches what belongs to a
// process that still runs, so parallel test processes are safe.
func SweepStale() error {
	errs := []error{sweepVMs()}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("ip netns list: %w", err))...)
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, ok := creatorPID(name)
		if !ok || processAlive(pid) {
			continue
		}
		if _, err := killProcessesIn(name); err != nil {
			errs = append(errs, err)
		}
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func creatorPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// IP runs `ip -n NAME args...`.
func (n *Netns) IP(args ...string) error {
	return run("ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace to completion and returns its stdout; a
// non-zero exit is an error carrying stderr.
func (n *Netns) Exec(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("in namespace %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets created by fn live in
// the namespace for their whole life, whichever thread later uses them; this is how a test
// talks to a lab address without a helper process.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked unless it is back in its own namespace: a goroutine
		// that exits locked takes its thread with it, so no other goroutine inherits the
		// lab namespace by accident.
		runtime.LockOSThread()
		errc <- n.doLocked(fn)
	}()
	return <-errc
}

func (n *Netns) doLocked(fn func() error) error {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %s: %w", n.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(fnErr, fmt.Errorf("leave namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// DialContext dials from inside the namespace.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Listen opens a listener inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Forward listens on addr inside the namespace and relays each TCP connection to
// target, dialled from the caller's (root) namespace, until c cleans up. It lets a
// process in the lab reach one service on the machine's loopback — the management
// cluster's kube-apiserver that envtest runs there — without routing the lab anywhere:
// listening on the namespace's own 127.0.0.1 with target's port keeps a kubeconfig's
// server URL (and the certificate's name) valid inside the namespace.
func (n *Netns) Forward(c Cleaner, addr, target string) error {
	l, err := n.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("forward %s in %s to %s: %w", addr, n.Name, target, err)
	}
	tr := newConnTracker(c, l)
	tr.wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 10*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !tr.track(in, out) {
				in.Close()
				out.Close()
				return
			}
			for _, p := range [][2]net.Conn{{in, out}, {out, in}} {
				tr.wg.Go(func() {
					_, _ = io.Copy(p[0], p[1])
					if tc, ok := p[0].(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
				})
			}
		}
	})
	return nil
}

// ListenPacket opens a packet socket inside the namespace.
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// HTTPClient returns a client whose connections start inside the namespace. Each request
// should carry its own deadline (context); the client has a 10 s overall timeout as a
// backstop.
func (n *Netns) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:       n.DialContext,
			DisableKeepAlives: true,
		},
	}
}

// WriteIPMIToolWrapper writes an executable script at path that runs ipmitool inside
// the namespace with the arguments and environment it was given. bmclib's ipmitool
// provider runs ipmitool as a process in the caller's namespace: a test in the root
// namespace hands this script to bmclib.WithIpmitoolPath so its IPMI traffic stays in
// the lab. (`rackboot serve` running inside the namespace needs no wrapper.) The paths
// are absolute because bmclib runs the tool with nothing but IPMITOOL_PASSWORD in its
// environment, no PATH.
func (n *Netns) WriteIPMIToolWrapper(path string) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("ipmitool wrapper: %w (apt-get install iproute2)", err)
	}
	tool, err := exec.LookPath("ipmitool")
	if err != nil {
		return fmt.Errorf("ipmitool wrapper: %w (apt-get install ipmitool)", err)
	}
	script := fmt.Sprintf("#!/bin/sh\n# ipmitool inside lab namespace %s, written by rackboot's lab.\nexec %s netns exec %s %s \"$@\"\n", n.Name, ip, n.Name, tool)
	return os.WriteFile(path, []byte(script), 0o755)
}

// Segment is one lab L2 network: a namespace holding a bridge with the server's address
// on it. Clients hang off the bridge through veth pairs, VMs through taps. Its addresses
// exist only inside the lab's namespaces, which have no route to the host.
type Segment struct {
	NS     *Netns
	Bridge string
	// Addr is the server's address and the subnet, e.g. 10.77.0.1/24.
	Addr netip.Prefix

	mu       sync.Mutex
	ports    int
	bmcs     int                 // BMC addresses handed out (StartBMCVM)
	bmcAddrs map[netip.Addr]bool // BMC addresses on the namespace's loopback
}

// NewSegment creates a namespace named after role with bridge br0 addressed addr.
func NewSegment(c Cleaner, role string, addr netip.Prefix) (*Segment, error) {
	ns, err := NewNetns(c, role)
	if err != nil {
		return nil, err
	}
	s := &Segment{NS: ns, Bridge: "br0", Addr: addr}
	for _, args := range [][]string{
		// STP off and no forward delay: a new port forwards at once, so the first
		// DHCPDISCOVER of a VM is not dropped while the bridge "learns".
		{"link", "add", s.Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"addr", "add", addr.String(), "dev", s.Bridge},
		{"link", "set", "dev", s.Bridge, "up"},
	} {
		if err := ns.IP(args...); err != nil {
			return nil, fmt.Errorf("segment %s: %w", role, err)
		}
	}
	return s, nil
}

func (s *Segment) nextPort(kind string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ports++
	return fmt.Sprintf("%s%d", kind, s.ports)
}

// Attach connects other to the bridge with a veth pair whose inside end is dev (with mac,
// if given), brought up without an address. It returns the bridge-side port name.
func (s *Segment) Attach(other *Netns, dev string, mac net.HardwareAddr) (string, error) {
	port := s.nextPort("veth")
	if err := s.NS.IP("link", "add", port, "type", "veth", "peer", "name", dev, "netns", other.Name); err != nil {
		return "", fmt.Errorf("veth %s ⇄ %s/%s: %w", port, other.Name, dev, err)
	}
	if err := s.NS.IP("link", "set", "dev", port, "master", s.Bridge, "up"); err != nil {
		return "", err
	}
	if mac != nil {
		if err := other.IP("link", "set", "dev", dev, "address", mac.String()); err != nil {
			return "", err
		}
	}
	if err := other.IP("link", "set", "dev", dev, "up"); err != nil {
		return "", err
	}
	return port, nil
}

// AddClient creates a namespace named after role whose eth0 is plugged into the bridge.
func (s *Segment) AddClient(c Cleaner, role string, mac net.HardwareAddr) (*Netns, error) {
	ns, err := NewNetns(c, role)
	if err != nil {
		return nil, err
	}
	if _, err := s.Attach(ns, "eth0", mac); err != nil {
		return nil, err
	}
	return ns, nil
}

// AddTap creates a tap device on the bridge for a QEMU guest and returns its name. QEMU
// must run inside s.NS to open it.
func (s *Segment) AddTap() (string, error) {
	tap := s.nextPort("tap")
	if err := s.NS.IP("tuntap", "add", "dev", tap, "mode", "tap"); err != nil {
		return "", err
	}
	if err := s.NS.IP("link", "set", "dev", tap, "master", s.Bridge, "up"); err != nil {
		return "", err
	}
	return tap, nil
}

// run runs a command in the current namespace; the error carries its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RAPrefix is the unique-local IPv6 prefix a Segment advertises with StartRouterAdvertisements.
const RAPrefix = "fd77::/64"

// StartRouterAdvertisements gives the bridge fd77::1/64 and runs dnsmasq-base in
// RA-only mode on it (no DNS, no DHCPv4, no DHCPv6 leases). iPXE (the 2019 build in
// Debian) waits about 13 s for IPv6 autoconfiguration on every `dhcp` unless the segment
// advertises a router; with this it finishes as soon as DHCPv4 does. The prefix is
// unique-local and the namespace has no route out, so nothing leaves the lab.
func (s *Segment) StartRouterAdvertisements(c Cleaner, log string) (*Process, error) {
	if err := s.NS.IP("-6", "addr", "add", "fd77::1/64", "dev", s.Bridge, "nodad"); err != nil {
		return nil, err
	}
	return s.NS.Start(c, log, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+s.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--user=root", "--group=root", "--pid-file=", "--log-facility=-",
		"--enable-ra", "--dhcp-range=::,constructor:"+s.Bridge+",ra-only,1h")
}

// connTracker closes a relay's listener and every connection it made when the Cleaner
// cleans up, and waits for the copying goroutines (Forward, ConnectProxy).
type connTracker struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newConnTracker(c Cleaner, l net.Listener) *connTracker {
	tr := &connTracker{conns: map[net.Conn]bool{}}
	c.Cleanup(func() {
		l.Close()
		tr.mu.Lock()
		for c := range tr.conns {
			c.Close()
		}
		tr.conns = nil
		tr.mu.Unlock()
		tr.wg.Wait()
	})
	return tr
}

// track records connections to close at cleanup; false once cleanup began (the caller
// closes them itself).
func (tr *connTracker) track(cs ...net.Conn) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.conns == nil {
		return false
	}
	for _, c := range cs {
		tr.conns[c] = true
	}
	return true
}
