package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ConnectProxy serves HTTP CONNECT on the caller's loopback and opens each tunnel from
// inside the namespace, to addresses in allow only, until c cleans up. It returns the
// proxy's URL (http://127.0.0.1:PORT).
//
// It is how processes outside the lab reach a workload cluster inside it without routing
// the lab anywhere: the Cluster API controllers run on the machine's loopback beside
// envtest, and a kubeadm cluster's API server listens on a lab host's address. client-go
// honours HTTPS_PROXY (and NO_PROXY for the management cluster on 127.0.0.1), so the
// controllers get HTTPS_PROXY=URL; TLS runs end to end through the tunnel, so the
// certificate's names stay what kubeadm made them.
func (n *Netns) ConnectProxy(c Cleaner, allow netip.Prefix) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("connect proxy for %s: %w", n.Name, err)
	}
	tr := newConnTracker(c, l)
	tr.wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			if !tr.track(in) {
				in.Close()
				return
			}
			tr.wg.Go(func() { n.tunnel(in, allow, tr.track) })
		}
	})
	return "http://" + l.Addr().String(), nil
}

// tunnel answers one CONNECT request on in and relays it to the target dialled from
// inside the namespace.
func (n *Netns) tunnel(in net.Conn, allow netip.Prefix, track func(...net.Conn) bool) {
	defer in.Close()
	_ = in.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(in)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	refuse := func(code int, msg string) {
		fmt.Fprintf(in, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s", code, http.StatusText(code), len(msg), msg)
	}
	if req.Method != http.MethodConnect {
		refuse(http.StatusMethodNotAllowed, "CONNECT only")
		return
	}
	target, err := netip.ParseAddrPort(req.Host)
	if err != nil || !allow.Contains(target.Addr()) {
		refuse(http.StatusForbidden, fmt.Sprintf("%s is not a lab address in %s", req.Host, allow))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := n.DialContext(ctx, "tcp", target.String())
	cancel()
	if err != nil {
		refuse(http.StatusBadGateway, err.Error())
		return
	}
	defer out.Close()
	if !track(out) {
		return
	}
	_ = in.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(in, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		// What the client sent after its CONNECT line may already sit in br.
		_, _ = io.Copy(out, br)
		if tc, ok := out.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(in, out)
		if tc, ok := in.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
}
