package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rackboot/rackboot/bootenv"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/ipxe"
	"github.com/rackboot/rackboot/metadata"
)

// BootEnvPath is where the agent's kernel and initramfs are served.
const BootEnvPath = "/bootenv/"

// bootEnvFiles are the published files of `rackboot bootenv import`.
var bootEnvFiles = []string{"vmlinuz", "initramfs.gz"}

// LoadBootEnv returns the agent boot environment published in dir (DATA_DIR/bootenv by
// `rackboot bootenv import`) as the iPXE scripts boot it from serverURL, or nil when
// none was built (agent states then boot from local disk, as the ipxe package says).
func LoadBootEnv(dir, serverURL string) (*ipxe.BootEnv, error) {
	for _, f := range append([]string{"manifest.json"}, bootEnvFiles...) {
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

// RegisterBootEnv serves dir's kernel and initramfs at /bootenv/NAME, with Range, and
// records each fetch on the timeline of the host it came from.
func (p *Provisioner) RegisterBootEnv(mux *http.ServeMux, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("agent boot environment %s: %w", dir, err)
	}
	// The root stays open for the process's life, like the assets directory.
	h := p.http.Wrap("bootenv", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		known := false
		for _, f := range bootEnvFiles {
			known = known || f == name
		}
		if !known {
			http.NotFound(w, r)
			return
		}
		f, err := root.Open(name)
		if err != nil {
			http.Error(w, "the agent boot environment is not built: run rackboot bootenv import", http.StatusNotFound)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, name, st.ModTime(), f)
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Time{})
		if r.Method != http.MethodGet {
			return
		}
		src := metadata.SourceIP(r)
		if host, err := p.store.HostByIP(r.Context(), src.String()); err == nil {
			p.event(host.ID, inventory.Event{Type: "http.bootenv", Message: "fetched the agent's " + name,
				Fields: map[string]string{"file": name, "ip": src.String(), "size": strconv.FormatInt(st.Size(), 10)}})
		}
	}))
	mux.Handle("GET "+BootEnvPath+"{file}", h)
	mux.Handle("HEAD "+BootEnvPath+"{file}", h)
	return nil
}

// AuthorizeImage lets a host fetch an image while it is being provisioned with it:
// images are the operator's, not the network's. It returns the host's ID.
func (p *Provisioner) AuthorizeImage(r *http.Request, name string) (string, error) {
	src := metadata.SourceIP(r)
	if !src.IsValid() {
		return "", errors.New("no source address")
	}
	ok := func(h *inventory.Host) bool {
		return h.State == inventory.StateProvisioning && h.Provision != nil && h.Provision.Image == name
	}
	if h, err := p.store.HostByIP(r.Context(), src.String()); err == nil {
		if ok(&h) {
			return h.ID, nil
		}
		return "", fmt.Errorf("host %s at %s is %s, not provisioning with image %s", h.ID, src, h.State, name)
	}
	if p.cfg.TrustFirstAddress {
		hosts, err := p.store.ListHosts(r.Context())
		if err != nil {
			return "", err
		}
		for i := range hosts {
			h := &hosts[i]
			if ok(h) && h.Operation != nil && h.Operation.AgentIP == src.String() {
				return h.ID, nil
			}
		}
	}
	return "", fmt.Errorf("%s is not the address of a host being provisioned with image %s", src, name)
}
