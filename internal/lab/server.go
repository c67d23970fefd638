package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bootenv"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Server is one `rackboot serve` inside a lab namespace, with the data directory and API
// token that survive its restarts, plus the CLI pointed at it.
type Server struct {
	NS *Netns
	// Bin is the rackboot binary.
	Bin string
	// Dir holds the data directory, the token file, the YAML config if any and one log
	// per run (rackboot-N.log).
	Dir       string
	DataDir   string
	TokenFile string
	// Addr is the --address; URL is http://Addr:8080, the boot listener.
	Addr string
	URL  string
	// AdminURL is the admin API's TLS listener inside the namespace
	// (https://127.0.0.1:8443, serve's default); AdminSocket its Unix socket in
	// DataDir. The certificate the CLI pins is DataDir/admin.crt, made on first start.
	AdminURL    string
	AdminSocket string
	// Args are the serve arguments of the next Start.
	Args []string
	// Proc is the running (or last) serve process.
	Proc *Process

	c    Cleaner
	runs int
}

// ServerConfig says how to run rackboot in a lab namespace.
type ServerConfig struct {
	Bin  string
	NS   *Netns
	Dir  string
	Addr string
	// Interface is the provisioning interface; default br0.
	Interface string
	// Flags are added after the common ones (--data-dir, --interface, --address,
	// --http-port 8080, --tftp-port 69, --api-token-file, --log-level debug).
	Flags []string
}

// NewServer prepares a Server: a random API token in Dir/api-token and
// Dir/data/assets. Start runs it.
func NewServer(c Cleaner, cfg ServerConfig) (*Server, error) {
	if cfg.Interface == "" {
		cfg.Interface = "br0"
	}
	s := &Server{
		NS: cfg.NS, Bin: cfg.Bin, Dir: cfg.Dir, Addr: cfg.Addr, URL: "http://" + cfg.Addr + ":8080",
		DataDir: filepath.Join(cfg.Dir, "data"), TokenFile: filepath.Join(cfg.Dir, "api-token"), c: c,
		AdminURL: fmt.Sprintf("https://127.0.0.1:%d", admin.DefaultPort),
	}
	s.AdminSocket = filepath.Join(s.DataDir, "admin.sock")
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(s.DataDir, "assets"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.TokenFile, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		return nil, err
	}
	s.Args = append([]string{
		"serve",
		"--data-dir", s.DataDir,
		"--interface", cfg.Interface,
		"--address", cfg.Addr,
		"--http-port", "8080",
		"--tftp-port", "69",
		"--api-token-file", s.TokenFile,
		"--log-level", "debug",
	}, cfg.Flags...)
	return s, nil
}

// Start runs `rackboot serve` and waits (up to 30 s) until /readyz answers 200.
func (s *Server) Start(ctx context.Context) error {
	s.runs++
	log := filepath.Join(s.Dir, fmt.Sprintf("rackboot-%d.log", s.runs))
	p, err := s.NS.Start(s.c, log, append([]string{s.Bin}, s.Args...)...)
	if err != nil {
		return err
	}
	s.Proc = p
	return Poll(ctx, 30*time.Second, "rackboot /readyz", Alive(HTTPStatus(s.NS.HTTPClient(), s.URL+"/readyz", 200), p))
}

// Stop sends SIGTERM and waits up to 10 s; an exit status other than 0 is an error, as is
// not exiting in time (the process is then killed).
func (s *Server) Stop() error {
	if err := s.Proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.Proc.Done():
	case <-time.After(10 * time.Second):
		_ = s.Proc.StopWithin(0)
		return fmt.Errorf("rackboot did not exit within 10s of SIGTERM:\n%s", Tail(s.Proc.Log, 30))
	}
	if _, err := s.Proc.Exited(); err != nil {
		return fmt.Errorf("rackboot exited with %v after SIGTERM, want a clean exit:\n%s", err, Tail(s.Proc.Log, 30))
	}
	return nil
}

// SetFlag replaces the value of flag in Args (or appends it) for the next Start.
func (s *Server) SetFlag(flag, value string) {
	for i := range s.Args {
		if s.Args[i] == flag && i+1 < len(s.Args) {
			s.Args[i+1] = value
			return
		}
	}
	s.Args = append(s.Args, flag, value)
}

// Metrics is a scrape of the boot listener's /metrics, from inside the namespace.
func (s *Server) Metrics(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.NS.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s/metrics: %s", s.URL, resp.Status)
	}
	return page, err
}

// CLI runs `rackboot ARGS --server ADMIN_URL --fingerprint FP --token-file F` in the
// namespace and returns stdout: the CLI reaches the admin API over TLS with the
// server's certificate pinned, as an operator's would.
func (s *Server) CLI(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fp, err := s.Fingerprint()
	if err != nil {
		return nil, err
	}
	full := append([]string{s.Bin}, args...)
	full = append(full, "--server", s.AdminURL, "--fingerprint", fp, "--token-file", s.TokenFile)
	return s.NS.Exec(ctx, full...)
}

// Fingerprint is the SHA-256 fingerprint of the admin API's certificate, which serve
// creates in DataDir on its first start.
func (s *Server) Fingerprint() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "admin.crt"))
	if err != nil {
		return "", fmt.Errorf("the admin API's certificate: %w (has rackboot serve started?)", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("%s holds no PEM certificate", filepath.Join(s.DataDir, "admin.crt"))
	}
	return admin.Fingerprint(blk.Bytes), nil
}

// CLIHint is how a person in the lab's namespace points the CLI at this server: the
// admin API's Unix socket and the token file.
func (s *Server) CLIHint() string {
	return "--server " + admin.UnixPrefix + s.AdminSocket + " --token-file " + s.TokenFile
}

// Events returns a host's timeline (`host events ID -o json`).
func (s *Server) Events(ctx context.Context, id string) ([]admin.Event, error) {
	out, err := s.CLI(ctx, "host", "events", id, "-o", "json")
	if err != nil {
		return nil, err
	}
	var evs []admin.Event
	if err := json.Unmarshal(out, &evs); err != nil {
		return nil, fmt.Errorf("host events %s -o json: %w: %s", id, err, out)
	}
	return evs, nil
}

// ImportBootEnv builds the agent's boot environment into DataDir the way an operator
// does: Debian's kernel package (apt-get download, cached under CacheDir) and `rackboot
// bootenv import` with this server's binary as the agent. The import's output goes to
// out, and into the error if it fails.
func (s *Server) ImportBootEnv(ctx context.Context, out io.Writer) error {
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	deb, err := bootenv.DownloadDebianKernel(ctx, filepath.Join(cache, "debs"), os.Getenv(KernelPackageEnv))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, s.Bin, "bootenv", "import", "--deb", deb, "--data-dir", s.DataDir, "--agent", s.Bin)
	cmd.Stdout = io.MultiWriter(&buf, out)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rackboot bootenv import: %w\n%s", err, buf.Bytes())
	}
	return nil
}

// AddLabImage registers the lab's Debian image (EnsureLabImageLog: built on first use,
// its progress and the CLI's answer written to out) as LabImageName.
func (s *Server) AddLabImage(ctx context.Context, out io.Writer) error {
	return s.addImage(ctx, out, LabImageName, EnsureLabImageLog)
}

// InstallPhoneHome copies the kernel and phone-home initramfs to
// DATA_DIR/assets/phonehome/{vmlinuz,initrd.gz}, where PhoneHomeProfileArgs point.
func (s *Server) InstallPhoneHome(k *Kernel, initrd string) error {
	dst := filepath.Join(s.DataDir, "assets", "phonehome")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := copyFile(k.Vmlinuz, filepath.Join(dst, "vmlinuz")); err != nil {
		return err
	}
	return copyFile(initrd, filepath.Join(dst, "initrd.gz"))
}

// PhoneHomeCmdline is the boot profile command line of phone-home hosts: rackboot fills
// in its URL and the MAC, and the phone-home init reads both.
const PhoneHomeCmdline = "console=ttyS0 quiet rackboot.url={{.ServerURL}} rackboot.mac={{.MAC}}"

// PhoneHomeProfileArgs are the `rackboot host add` flags of the phone-home boot profile.
func PhoneHomeProfileArgs() []string {
	return []string{"--boot-kernel", "phonehome/vmlinuz", "--boot-initrd", "phonehome/initrd.gz", "--boot-cmdline", PhoneHomeCmdline}
}

// API is the admin API client for this server, its connections made inside the lab
// namespace: for polling, where a CLI process per look would take CPU from the guests.
func (s *Server) API() (*admin.Client, error) {
	tok, err := os.ReadFile(s.TokenFile)
	if err != nil {
		return nil, err
	}
	fp, err := s.Fingerprint()
	if err != nil {
		return nil, err
	}
	return admin.NewClient(admin.ClientOptions{Server: s.AdminURL, Token: strings.TrimSpace(string(tok)),
		Fingerprint: fp, Timeout: 10 * time.Second, DialContext: s.NS.DialContext})
}

// WaitHosts polls the hosts (once a second) until done holds for every one of them,
// handing each new timeline event to onEvent (if not nil) as it appears. It fails at
// once when a host fails (with its reason) or rackboot exits, and after timeout
// otherwise.
func (s *Server) WaitHosts(ctx context.Context, ids []string, timeout time.Duration, what string, done func(admin.Host) bool, onEvent func(id string, e admin.Event)) error {
	api, err := s.API()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := map[string]uint64{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if exited, err := s.Proc.Exited(); exited {
			return fmt.Errorf("waiting for %s: rackboot exited (%v); last lines of %s:\n%s", what, err, s.Proc.Log, Tail(s.Proc.Log, 30))
		}
		n, last := 0, ""
		for _, id := range ids {
			if onEvent != nil {
				evs, err := api.Events(ctx, id, seen[id])
				if err != nil && ctx.Err() == nil {
					return fmt.Errorf("waiting for %s: timeline of %s: %w", what, id, err)
				}
				for _, e := range evs {
					if e.Seq > seen[id] {
						seen[id] = e.Seq
						onEvent(id, e)
					}
				}
			}
			h, err := api.GetHost(ctx, id)
			switch {
			case err != nil && ctx.Err() == nil:
				return fmt.Errorf("waiting for %s: %w", what, err)
			case err != nil:
			case h.State == inventory.StateFailed:
				return fmt.Errorf("waiting for %s: host %s failed: %s", what, id, h.StateReason)
			case done(h):
				n++
			default:
				last += fmt.Sprintf(" %s is %s", id, h.State)
				if h.Operation != nil {
					last += "/" + string(h.Operation.Phase)
				}
			}
		}
		if n == len(ids) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: gave up after %v:%s", what, timeout, last)
		case <-tick.C:
		}
	}
}
