package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rackboot/rackboot/internal/bootenv"
	"github.com/rackboot/rackboot/internal/hotfile"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/trust"
)

// BootEnvPath is where the agent's kernel and initramfs are served: BootEnvPath+KEY/NAME
// for the build with that key (what BootEnvs puts in scripts), BootEnvPath+NAME for the
// build published now.
const BootEnvPath = "/bootenv/"

// bootEnvFiles are the published files of `rackboot bootenv import`.
var bootEnvFiles = []string{bootenv.KernelFile, bootenv.InitramfsFile}

// LoadBootEnv returns the agent boot environment published in dir (DATA_DIR/bootenv by
// `rackboot bootenv import`) as the iPXE scripts boot it from serverURL, at the
// unversioned BootEnvPath+NAME URLs, or nil when none was built (agent states then boot
// from local disk, as the ipxe package says). It is read once; BootEnvs follows imports.
func LoadBootEnv(dir, serverURL string) (*ipxe.BootEnv, error) {
	for _, f := range append([]string{bootenv.ManifestFile}, bootEnvFiles...) {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("agent boot environment: %w", err)
		}
	}
	e := bootenv.Env{Dir: dir, Kernel: filepath.Join(dir, bootEnvFiles[0]), Initramfs: filepath.Join(dir, bootEnvFiles[1])}
	be := e.BootEnv(serverURL+BootEnvPath, "")
	return &be, nil
}

// BootEnvs follows the agent's boot environment that `rackboot bootenv import`
// publishes in DATA_DIR/bootenv, so that serve uses a new one at the next boot of the
// agent, with no restart and no call to serve: the import command needs no server URL,
// token or running server, and nothing can be missed.
//
// Current costs one stat of the published manifest.json, which bootenv.Build renames
// into place after the kernel and initramfs; only when that file changed (another inode,
// size or modification time) is it read again. Its URLs name the build's key
// (BootEnvPath+KEY/vmlinuz), served from the build's cache entry, which Build keeps
// while the next build is published: a host that fetched its kernel just before an
// import still gets the initramfs that matches it, and a script never mixes two builds.
//
// A BootEnvs is safe for concurrent use. The *ipxe.BootEnv it returns is shared and
// must not be modified.
type BootEnvs struct {
	dir, serverURL string
	log            *slog.Logger

	mu   sync.Mutex
	seen os.FileInfo // the manifest cur was read from; nil when none is published
	cur  *ipxe.BootEnv
	key  string
	// failed is a manifest that could not be read, so its error is logged once.
	failed os.FileInfo
}

// NewBootEnvs follows dir (DATA_DIR/bootenv); scripts reach it at serverURL. log may be
// nil.
func NewBootEnvs(dir, serverURL string, log *slog.Logger) *BootEnvs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &BootEnvs{dir: dir, serverURL: strings.TrimSuffix(serverURL, "/"), log: log}
}

// Current returns the boot environment published now, or nil when there is none (agent
// states then boot from local disk). A manifest that cannot be read (damaged, its files
// missing) is logged and leaves the previous environment in use.
func (b *BootEnvs) Current() *ipxe.BootEnv {
	fi, statErr := os.Stat(filepath.Join(b.dir, bootenv.ManifestFile))
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		if b.cur != nil {
			b.log.Warn("the agent boot environment was removed: hosts that need the agent boot from local disk until rackboot bootenv import builds one", "dir", b.dir, "key", b.key)
		}
		b.seen, b.cur, b.key, b.failed = nil, nil, "", nil
		return nil
	case statErr != nil:
		return b.cur
	case b.seen != nil && sameFile(b.seen, fi):
		return b.cur
	}
	e, err := bootenv.Published(b.dir)
	if err != nil {
		// Tried again at the next call: a manifest being repaired by hand is picked up
		// without waiting for it to change again. Logged once per manifest.
		if b.failed == nil || !sameFile(b.failed, fi) {
			b.log.Error("cannot use the agent boot environment; the previous one stays in use", "dir", b.dir, "err", err, "key", b.key)
			b.failed = fi
		}
		return b.cur
	}
	base := b.serverURL + BootEnvPath + e.Key
	for _, f := range bootEnvFiles {
		if _, err := os.Stat(filepath.Join(bootenv.KeyDir(b.dir, e.Key), f)); err != nil {
			// Files put in place by hand, without Build's cache: serve them as published.
			base = b.serverURL + BootEnvPath
			break
		}
	}
	be := e.BootEnv(base, "")
	b.seen, b.cur, b.key, b.failed = fi, &be, e.Key, nil
	b.log.Info("agent boot environment in use", "key", e.Key, "kernelVersion", e.KernelVersion, "modules", e.Modules, "dir", b.dir)
	return b.cur
}

// Ready reports whether a boot environment is published, so the agent can boot.
func (b *BootEnvs) Ready() bool { return b.Current() != nil }

// sameFile reports whether two stats of the published manifest are of the same
// version: Build publishes by renaming a new link over it, so the inode tells builds
// apart even within one tick of the file system's clock.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// RegisterBootEnv serves the agent's kernel and initramfs from dir (DATA_DIR/bootenv),
// with Range: BootEnvPath+KEY/NAME from the build with that key, BootEnvPath+NAME from
// the build published now. They are served from memory (package hotfile): read at the
// first request, checked against dir at most once a second, so dir may still be empty
// and a build imported later is served within a second of its import, with no restart;
// the published files are hard links to the build's cache entry and share its copy.
// Each GET is recorded, through the inventory's group commit, on the timeline of the
// host it came from.
func (p *Provisioner) RegisterBootEnv(mux *http.ServeMux, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("agent boot environment %s: %w", dir, err)
	}
	// The root stays open for the process's life, like the assets directory.
	cache, err := hotfile.New(hotfile.Config{FS: root.FS(), Now: p.now})
	if err != nil {
		return err
	}
	h := p.http.Wrap("bootenv", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, key := r.PathValue("file"), r.PathValue("key")
		known := false
		for _, f := range bootEnvFiles {
			known = known || f == name
		}
		if !known || (key != "" && !bootenv.ValidKey(key)) {
			http.NotFound(w, r)
			return
		}
		file := name
		if key != "" {
			file = path.Join("cache", key, name)
		}
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		w.Header()["Content-Type"] = octetStream
		size, err := cache.Serve(w, r, file)
		if err != nil {
			notBuilt(w, key)
			return
		}
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Time{})
		if r.Method != http.MethodGet {
			return
		}
		src := metadata.SourceIP(r)
		if hostID, ok := p.gate.WhoForTimeline(r.Context(), src); ok {
			fields := map[string]string{"file": name, "ip": src.String(), "size": strconv.FormatInt(size, 10)}
			if key != "" {
				fields["key"] = key
			}
			p.recordEvent(hostID, inventory.Event{Type: "http.bootenv", Message: "fetched the agent's " + name, Fields: fields})
		}
	}))
	for _, pattern := range []string{BootEnvPath + "{file}", BootEnvPath + "{key}/{file}"} {
		mux.Handle("GET "+pattern, h)
		mux.Handle("HEAD "+pattern, h)
	}
	return nil
}

// octetStream is the boot files' Content-Type, shared by every response (net/http only
// replaces header values, never appends to them).
var octetStream = []string{"application/octet-stream"}

// notBuilt answers a boot environment file that is not there.
func notBuilt(w http.ResponseWriter, key string) {
	w.Header().Del("Content-Type")
	msg := "the agent boot environment is not built: run rackboot bootenv import"
	if key != "" {
		msg = "agent boot environment " + key + " is no longer kept (newer ones were imported since this host's script was made): the host gets the current one at its next boot"
	}
	http.Error(w, msg, http.StatusNotFound)
}

// RouteImage labels the image route in rackboot_trust_rejected_total.
const RouteImage = "image"

// EventImageRejected is a refused image fetch on a host's timeline.
const EventImageRejected = "image.rejected"

// AuthorizeImage lets a host fetch an image while it is being provisioned with it,
// from the address its agent is bound to: images are the operator's, not the
// network's. It returns the host's ID. A refusal is counted, and recorded on the hosts
// being provisioned with that image (the ones a stranger would be after).
func (p *Provisioner) AuthorizeImage(r *http.Request, name string) (string, error) {
	src := metadata.SourceIP(r)
	ctx := r.Context()
	provisioning := func(h *inventory.Host) bool {
		return h.State == inventory.StateProvisioning && h.Provision != nil && h.Provision.Image == name && h.Operation != nil
	}
	h, ok := p.gate.Who(ctx, src)
	var err error
	switch {
	case !ok:
		err = &trust.Refusal{Reason: trust.ReasonWrongAddress, Msg: fmt.Sprintf("%s is not the address of a host being provisioned with image %s", src, name)}
	case !provisioning(&h):
		err = &trust.Refusal{Reason: trust.ReasonNoBinding, Msg: fmt.Sprintf("host %s at %s is %s, not provisioning with image %s", h.ID, src, h.State, name)}
	default:
		err = p.gate.Bound(&h, h.Operation.AgentIP, src)
	}
	if err == nil {
		return h.ID, nil
	}
	hosts, lerr := p.store.ListHosts(ctx)
	named := false
	for i := range hosts {
		if lerr == nil && provisioning(&hosts[i]) {
			named = true
			p.gate.Reject(hosts[i].ID, RouteImage, EventImageRejected, src, err, map[string]string{"image": name})
		}
	}
	if !named {
		p.gate.Reject("", RouteImage, EventImageRejected, src, err, nil)
	}
	return "", err
}
