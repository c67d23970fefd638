package images_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/agent"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
)

// streamSize is the raw image size. One iteration of the slowest sub-benchmark (the
// agent writing the zstd image) takes 0.8-2 s on two shared cores, so `make test`'s
// -benchtime 1x costs about 20 s in all, while 256 MiB is far beyond every buffer on the
// way (the agent's 1 MiB held head and 4 MiB write buffer, socket buffers): even b.N=1
// measures steady streaming.
const streamSize = 256 << 20

// benchToken is the agent's per-boot token for the stub agent API.
const benchToken = "bench-0123456789abcdefghij"

// BenchmarkStream measures the whole image path of a provisioning — rackboot's real
// image handler (images.Catalog behind an http.Server configured as `rackboot serve`
// configures it) on loopback, the real agent (agent.Run against a disk file, streaming,
// sha256 verified, fsync'd, exactly as on a host) — beside what the same bytes cost with
// standard tools, all on 127.0.0.1 and on the same filesystem:
//
//	raw/cp-iocopy           io.Copy file→file (copy_file_range) + fsync: the floor
//	raw/cp-exec             GNU cp + fsync
//	raw/sha256              reading and hashing the file: what the agent's check costs
//	raw/rackboot-agent      rackboot handler → agent → disk file
//	raw/nginx-agent         nginx (sendfile) → agent → disk file
//	raw/rackboot-curl       rackboot handler → curl -o file + fsync
//	raw/nginx-curl          nginx → curl -o file + fsync
//	zstd/rackboot-agent     the zstd image: rackboot → agent (decompressing) → disk file
//	zstd/nginx-agent        nginx → agent → disk file
//	zstd/nginx-curl-zstd    nginx → curl | zstd -d -o file (+ fsync)
//
// Every sub-benchmark counts the raw image size (the bytes that land on the disk), so
// their MB/s compare directly, and reports cpu-ms/op, the CPU time of the whole pipeline
// (server, client, tools) per image: on shared cores the wall time swings with the
// neighbours' load, the CPU much less. hack/bench-stream.sh runs them in rounds and
// prints medians and ratios. The source files are in the page cache (a server streams a
// recently used image from RAM); the destination is fsync'd each time and its content
// checked after the loop. The agent API is a stub: it is not on the data path. nginx,
// curl and zstd are required (RACKBOOT_REQUIRE_LAB=1 fails when missing).
func BenchmarkStream(b *testing.B) {
	nginx := requireTool(b, "nginx", "nginx", "/usr/sbin/nginx")
	curl := requireTool(b, "curl", "curl")
	cp := requireTool(b, "cp", "coreutils")
	zstdBin := requireTool(b, "zstd", "zstd")

	f := newStreamFixture(b, nginx)
	ctx := context.Background()

	b.Run("raw/cp-iocopy", func(b *testing.B) {
		dst := destination(b, "copy.img", streamSize)
		benchLoop(b, f, func() error { return copyFile(f.raw.path, dst) })
		checkFile(b, dst, f.raw)
	})
	b.Run("raw/cp-exec", func(b *testing.B) {
		dst := destination(b, "copy.img", streamSize)
		benchLoop(b, f, func() error {
			if err := run(exec.Command(cp, f.raw.path, dst)); err != nil {
				return err
			}
			return fsyncFile(dst)
		})
		checkFile(b, dst, f.raw)
	})
	b.Run("raw/sha256", func(b *testing.B) {
		benchLoop(b, f, func() error {
			got, err := fileSHA256(f.raw.path, f.raw.size)
			if err == nil && got != f.raw.sha256 {
				err = fmt.Errorf("sha256 %s, want %s", got, f.raw.sha256)
			}
			return err
		})
	})
	for _, im := range []streamFile{f.raw, f.zst} {
		for _, src := range []struct{ name, base string }{{"rackboot", f.rackbootURL}, {"nginx", f.nginxURL}} {
			b.Run(im.format+"/"+src.name+"-agent", func(b *testing.B) {
				benchAgent(ctx, b, f, src.base+im.urlPath, im, f.raw)
			})
		}
	}
	for _, src := range []struct{ name, base string }{{"rackboot", f.rackbootURL}, {"nginx", f.nginxURL}} {
		b.Run("raw/"+src.name+"-curl", func(b *testing.B) {
			dst := destination(b, "curl.img", streamSize)
			benchLoop(b, f, func() error {
				if err := run(curlCommand(curl, src.base+f.raw.urlPath, "-o", dst)); err != nil {
					return err
				}
				return fsyncFile(dst)
			})
			checkFile(b, dst, f.raw)
		})
	}
	b.Run("zstd/nginx-curl-zstd", func(b *testing.B) {
		dst := destination(b, "curl.img", streamSize)
		benchLoop(b, f, func() error {
			c1 := curlCommand(curl, f.nginxURL+f.zst.urlPath)
			c2 := exec.Command(zstdBin, "-d", "-q", "-f", "-o", dst)
			if err := runPipe(c1, c2); err != nil {
				return err
			}
			return fsyncFile(dst)
		})
		checkFile(b, dst, f.raw)
	})
}

// benchLoop times fn over b.Loop with the raw image size per iteration, and reports the
// CPU time of the whole pipeline per iteration (cpu-ms/op): on shared cores the wall
// time swings with the neighbours' load, the CPU an image costs much less.
func benchLoop(b *testing.B, f *streamFixture, fn func() error) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(streamSize)
	start := f.cpu()
	for b.Loop() {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.cpu()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// cpu is the CPU time used so far by everything a sub-benchmark runs: this process
// (rackboot's handler, the agent, the stub agent API), its reaped children (cp, curl,
// zstd) and nginx (master and worker, read from /proc: they are reaped only at the end).
// Kernel writeback threads are nobody's: the same bytes reach the disk in every case.
func (f *streamFixture) cpu() time.Duration {
	var d time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err == nil {
			d += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return d + processTreeCPU(f.nginxPID)
}

// processTreeCPU is the user+system time of pid and its descendants, 0 for what cannot
// be read.
func processTreeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var d time.Duration
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which may hold spaces: state is field 3,
		// utime and stime fields 14 and 15, in USER_HZ ticks (100 on Linux).
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			fields := strings.Fields(string(stat[i+1:]))
			if len(fields) > 12 {
				ut, _ := strconv.ParseInt(fields[11], 10, 64)
				st, _ := strconv.ParseInt(fields[12], 10, 64)
				d += time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, k := range strings.Fields(string(kids)) {
			if kid, err := strconv.Atoi(k); err == nil {
				d += processTreeCPU(kid)
			}
		}
	}
	return d
}

// streamFile is one image in the catalog, as served.
type streamFile struct {
	format  string // "raw" or "zstd", the sub-benchmark prefix
	name    string // catalog name
	path    string // the catalog's file, also nginx's
	urlPath string
	sha256  string
	size    int64
}

type streamFixture struct {
	raw, zst    streamFile
	rackbootURL string // http://127.0.0.1:PORT, rackboot's real image route
	nginxURL    string // nginx serves the catalog's directory at the same paths
	nginxPID    int    // its master
}

// newStreamFixture uploads a raw image and its zstd into a real catalog (bbolt
// inventory, DATA_DIR/images), serves the catalog as `rackboot serve` does and starts
// nginx on the same directory.
func newStreamFixture(b *testing.B, nginxBin string) *streamFixture {
	b.Helper()
	dir := b.TempDir()
	ctx := context.Background()
	st, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	// A host, so every transfer is recorded on its timeline as in production.
	if _, err := st.CreateHosts(ctx, inventory.Host{ID: "bench", MACs: []string{"52:54:00:be:0c:01"}}); err != nil {
		b.Fatal(err)
	}
	imgDir := filepath.Join(dir, "images")
	cat, err := images.New(images.Config{
		Dir: imgDir, Store: st,
		Authorize:  func(*http.Request, string) (string, error) { return "bench", nil },
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cat.Close() })

	f := &streamFixture{}
	upload := func(format, name string, data []byte) streamFile {
		sum := sha256.Sum256(data)
		sf := streamFile{format: format, name: name, path: filepath.Join(imgDir, name), urlPath: images.URLPath(name),
			sha256: hex.EncodeToString(sum[:]), size: int64(len(data))}
		if _, err := cat.Add(ctx, images.AddRequest{Name: name, SHA256: sf.sha256}); err != nil {
			b.Fatal(err)
		}
		im, err := cat.Upload(ctx, name, bytes.NewReader(data))
		if err != nil || im.Status != inventory.ImageReady {
			b.Fatalf("upload %s: %v (%s: %s)", name, err, im.Status, im.Error)
		}
		return sf
	}
	func() {
		raw := streamContent(streamSize)
		var zbuf bytes.Buffer
		enc, err := zstd.NewWriter(&zbuf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := enc.Write(raw); err != nil {
			b.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
		f.raw = upload("raw", "bench.img", raw)
		f.zst = upload("zstd", "bench.img.zst", zbuf.Bytes())
	}()
	// Half a gigabyte of setup garbage: collect it now rather than in the first
	// sub-benchmark.
	debug.FreeOSMemory()
	b.Logf("image: %d bytes raw, %d bytes zstd (%.0f%%)", f.raw.size, f.zst.size, 100*float64(f.zst.size)/float64(f.raw.size))

	mux := http.NewServeMux()
	cat.Register(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// As cmd/rackboot/serve.go: no WriteTimeout, the handler pushes per-write deadlines.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	})
	f.rackbootURL = "http://" + ln.Addr().String()
	f.nginxURL, f.nginxPID = startNginx(b, nginxBin, imgDir)
	return f
}

// streamContent is n bytes that compress like a real disk image: a third of the 4 KiB
// blocks zero, the rest random low nibbles (zstd shrinks it to about 35%).
func streamContent(n int) []byte {
	var seed [32]byte
	copy(seed[:], "rackboot image stream benchmark")
	r := rand.NewChaCha8(seed)
	buf := make([]byte, n)
	for off := 0; off < n; off += 4096 {
		blk := buf[off:min(off+4096, n)]
		if r.Uint64()%3 == 0 {
			continue
		}
		_, _ = r.Read(blk)
		for i := range blk {
			blk[i] &= 0x0f
		}
	}
	return buf
}

// startNginx runs nginx in the foreground serving the files in root at /images/ (the
// catalog's URL layout) on 127.0.0.1 and returns its base URL and its master's PID. The
// listening socket is made here (port 0) and handed to nginx the way its binary upgrade
// does (fd 3, NGINX="3;"), so there is no port race and nothing to poll: the socket
// accepts into its backlog before nginx is up.
func startNginx(b *testing.B, bin, root string) (string, int) {
	b.Helper()
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer lf.Close()
	addr := ln.Addr().String()
	// nginx as deployed: a master and one worker. As root the worker would switch to
	// nobody, who cannot read b.TempDir, so it stays root; as anyone else it runs as
	// that user anyway. Temp paths inside dir: nothing under /var/lib/nginx is needed.
	// (master_process off would be simpler, but nginx 1.22 crashes on an inherited
	// socket without a master.)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
%[4]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
        location /images/ { alias %[3]s/; }
    }
}
`, dir, addr, root, user)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Env = append(os.Environ(), "NGINX=3;")
	cmd.ExtraFiles = []*os.File{lf}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Its own process group, so the cleanup reaches the worker too; the master dies with
	// the benchmark even if the cleanup never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start nginx: %v", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		// SIGTERM: the master stops its worker and waits for it. Then whatever is
		// left of the group (nothing, normally) is killed.
		_ = syscall.Kill(pid, syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	})
	url := "http://" + addr
	// The first request waits in the backlog until nginx accepts it; if nginx died
	// instead, its copy of the socket closed and the request fails.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url+"/", nil)
	req.Close = true
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		b.Fatalf("nginx did not answer on %s: %v\n%s%s", addr, err, stderr.Bytes(), log)
	}
	resp.Body.Close()
	return url, pid
}

// agentAPI is the stub server side of the agent API: every hello gets the same
// provisioning plan; results are kept.
type agentAPI struct {
	plan    agentapi.Plan
	mu      sync.Mutex
	results []agentapi.Result
}

func (s *agentAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tok, ok := agentapi.BearerToken(r); !ok || tok != benchToken {
		agentapi.WriteError(w, http.StatusUnauthorized, "unknown token")
		return
	}
	switch r.URL.Path {
	case agentapi.PathHello:
		agentapi.WriteJSON(w, http.StatusOK, s.plan)
	case agentapi.PathProgress:
		w.WriteHeader(http.StatusNoContent)
	case agentapi.PathResult:
		var res agentapi.Result
		if err := agentapi.DecodeRequest(r, &res); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.mu.Lock()
		s.results = append(s.results, res)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (s *agentAPI) last() (agentapi.Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.results) == 0 {
		return agentapi.Result{}, false
	}
	return s.results[len(s.results)-1], true
}

// benchAgent runs the agent, as on a host, provisioning im from url onto a disk file;
// raw is what must end up on the disk.
func benchAgent(ctx context.Context, b *testing.B, f *streamFixture, url string, im, raw streamFile) {
	api := &agentAPI{plan: agentapi.Plan{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: url, SHA256: im.sha256, Format: agentapi.Format(im.format), Size: im.size,
	}}}
	apiSrv := httptest.NewServer(api)
	b.Cleanup(apiSrv.Close)
	root, disk := newAgentHost(b, raw.size+1<<20)
	cfg := agent.Config{
		Log: slog.New(slog.DiscardHandler), Version: "bench", Root: root, DevDir: filepath.Dir(disk),
		Cmdline: fmt.Sprintf("rackboot.url=%s rackboot.token=%s rackboot.mac=52:54:00:be:0c:01", apiSrv.URL, benchToken),
		Power:   func(agent.PowerAction) error { return nil },
		// Stream, as for any image bigger than half the host's free memory: verifying
		// 256 MiB in memory first would measure a different path.
		VerifyInMemoryMax: -1,
	}
	benchLoop(b, f, func() error {
		if err := agent.Run(ctx, cfg); err != nil {
			return err
		}
		res, ok := api.last()
		switch {
		case !ok:
			return errors.New("the agent reported no result")
		case !res.OK || res.ImageSHA256 != im.sha256 || res.ImageBytes != im.size || res.BytesWritten != raw.size:
			return fmt.Errorf("result %+v, want OK with sha256 %s, %d bytes served, %d written", res, im.sha256, im.size, raw.size)
		}
		return nil
	})
	got, err := fileSHA256(disk, raw.size)
	if err != nil {
		b.Fatal(err)
	}
	if got != raw.sha256 {
		b.Fatalf("the disk holds sha256 %s, want the raw image's %s", got, raw.sha256)
	}
}

// newAgentHost is a fake machine for agent.Run: proc and sys files describing one disk,
// vda, a file of size bytes (see destination). It returns the root and the disk's path.
func newAgentHost(b *testing.B, size int64) (string, string) {
	b.Helper()
	root := b.TempDir()
	files := map[string]string{
		"proc/meminfo":                     "MemTotal:  4000000 kB\nMemAvailable:  3000000 kB\n",
		"proc/uptime":                      "3.50 1.00\n",
		"sys/class/dmi/id/product_uuid":    "11111111-2222-3333-4444-555555555555\n",
		"sys/block/vda/size":               strconv.FormatInt(size/512, 10) + "\n",
		"sys/block/vda/removable":          "0\n",
		"sys/block/vda/ro":                 "0\n",
		"sys/class/net/eth0/type":          "1\n",
		"sys/class/net/eth0/address":       "52:54:00:be:0c:01\n",
		"sys/class/net/eth0/carrier":       "1\n",
		"sys/class/net/eth0/device/vendor": "0x1af4\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	disk := filepath.Join(root, "dev", "vda")
	if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := fillFile(disk, size); err != nil {
		b.Fatal(err)
	}
	return root, disk
}

// destination is a file of size zero bytes, written and fsync'd, for a sub-benchmark to
// write to. Every destination starts like a disk, existing and written once, because
// this VM makes the first touch of memory it has not used for a while expensive (a
// fresh 256 MiB of page cache costs 0.6 s of system time the first time, 0.06 s after
// that): without it, whichever sub-benchmark first needs new page cache pays for it,
// and the ratios depend on the order they run in.
func destination(b *testing.B, name string, size int64) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), name)
	if err := fillFile(p, size); err != nil {
		b.Fatal(err)
	}
	return p
}

func fillFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			f.Close()
			return err
		}
	}
	return errors.Join(f.Sync(), f.Close())
}

// requireTool returns the path of tool (or of the first of fallback paths that exists),
// else skips b, or fails it when RACKBOOT_REQUIRE_LAB=1 (as lab.Require does), so CI
// cannot pass by skipping.
func requireTool(b *testing.B, tool, pkg string, fallback ...string) string {
	b.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	for _, p := range fallback {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install %s, or make deps)", tool, pkg)
	if os.Getenv("RACKBOOT_REQUIRE_LAB") == "1" {
		b.Fatalf("%s and RACKBOOT_REQUIRE_LAB=1", msg)
	}
	b.Skip(msg)
	return ""
}

func curlCommand(curl, url string, args ...string) *exec.Cmd {
	return exec.Command(curl, append([]string{"-sS", "--fail", "--noproxy", "*", "--max-time", "120", url}, args...)...)
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// runPipe runs c1 | c2.
func runPipe(c1, c2 *exec.Cmd) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var e1, e2 bytes.Buffer
	c1.Stdout, c1.Stderr = pw, &e1
	c2.Stdin, c2.Stderr = pr, &e2
	if err := c1.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	err = c2.Start()
	pr.Close()
	pw.Close()
	err1 := c1.Wait()
	var err2 error
	if err == nil {
		err2 = c2.Wait()
	}
	if err != nil || err1 != nil || err2 != nil {
		return fmt.Errorf("%s | %s: %w: %s%s", strings.Join(c1.Args, " "), strings.Join(c2.Args, " "), errors.Join(err, err1, err2), e1.Bytes(), e2.Bytes())
	}
	return nil
}

// copyFile is cp in Go: io.Copy between files (copy_file_range), then fsync.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Sync(), out.Close())
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// fileSHA256 hashes the first n bytes of path.
func fileSHA256(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if m, err := io.Copy(h, io.LimitReader(f, n)); err != nil || m != n {
		return "", fmt.Errorf("read %s: %d of %d bytes: %v", path, m, n, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkFile fails b unless path holds exactly want's bytes.
func checkFile(b *testing.B, path string, want streamFile) {
	b.Helper()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	if st.Size() != want.size {
		b.Fatalf("%s has %d bytes, want %d", path, st.Size(), want.size)
	}
	got, err := fileSHA256(path, want.size)
	if err != nil {
		b.Fatal(err)
	}
	if got != want.sha256 {
		b.Fatalf("%s has sha256 %s, want %s", path, got, want.sha256)
	}
}
