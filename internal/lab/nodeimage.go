package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The Kubernetes node image: the lab's Debian 12 image (hack/lab-image.sh, same
// debootstrap, same disk layout) plus a container runtime, the kubelet, kubeadm, kubectl
// and every container image kubeadm init/join needs, all built from source offline (the
// Go module proxy and Debian's mirror) and cached like the lab image. The recipe:
// hack/node-image.sh builds the binaries, this file assembles the container images
// (nodeimage_oci.go) and the overlay (hack/node-image/rootfs) and hands both to
// hack/lab-image.sh. See the README's "Node image" section.

// NodeImageName is the name the lab registers the node image under (rackboot image add).
const NodeImageName = "debian-12-k8s"

// The versions the node image carries that name container images. The Go modules under
// hack/node-image pin the sources; a build fails when `kubeadm config images list` of
// the kubeadm it built asks for other names than NodeOCIImages makes.
const (
	NodeKubernetesVersion = "v1.36.4"
	NodeEtcdImageTag      = "3.6.8-0"
	NodeCoreDNSVersion    = "v1.14.2"
	NodePauseVersion      = "3.10.2"
)

// nodeImagePackages are the Debian packages the node image adds to the lab image's: the
// CNI plugins (bridge, host-local, loopback, portmap in /usr/lib/cni), what kubeadm's
// preflight and the kubelet look for on the host, runc's libseccomp.
const nodeImagePackages = "containernetworking-plugins,conntrack,socat,ebtables,iptables,ethtool,libseccomp2"

// nodeImageHostBinaries go to /usr/local/bin of the node; the control-plane binaries
// live only in their container images.
var nodeImageHostBinaries = []string{"kubelet", "kubeadm", "kubectl", "containerd", "containerd-shim-runc-v2", "ctr", "runc"}

// nodeImageInputs are the files, relative to the repository root, whose content is the
// node image's cache key, besides everything under hack/node-image.
var nodeImageInputs = []string{LabImageScript, "hack/node-image.sh", "internal/lab/nodeimage.go", "internal/lab/nodeimage_oci.go"}

// NodeImageTools are what the node image's recipe runs besides the lab image's.
func NodeImageTools() []string {
	return append(LabImageTools(), "go", "gcc", "pkg-config", "apt-get", "dpkg-deb", "strip")
}

// NodeImageTool is the path of a tool built with the node image at path (kubectl,
// kubeadm), kept beside it for talking to the clusters its hosts form.
func NodeImageTool(path, tool string) string {
	return path + ".tools/" + tool
}

// EnsureNodeImage returns the Kubernetes node image (zstd-compressed raw disk) and the
// sha256 of the file, building it on first use (cold: the Kubernetes, containerd, etcd
// and CoreDNS builds take tens of minutes on 2 cores). Beside it: PATH.provenance.json
// (every component's version, source and sha256) and PATH.tools (kubectl, kubeadm).
// Needs root, like the lab image; progress gets the build's output.
func EnsureNodeImage(ctx context.Context, progress io.Writer) (path, sum string, err error) {
	root, err := findRepoFile("go.mod")
	if err != nil {
		return "", "", err
	}
	root = filepath.Dir(root)
	key, err := nodeImageKey(root)
	if err != nil {
		return "", "", err
	}
	var prov *NodeImageProvenance
	var tools string
	return ensureCachedImage(ctx, progress, cachedImage{
		what:   "node image",
		prefix: NodeImageName,
		key:    key,
		log:    "node-build-",
		tools:  NodeImageTools(),
		hint:   "make deps (Debian packages, among them gcc, libseccomp-dev and the lab image's tools; Go on PATH)",
		build: func(ctx context.Context, work, out string, log io.Writer) error {
			var err error
			prov, err = buildNodeImage(ctx, root, work, out, log)
			tools = filepath.Join(work, "k", "bin")
			return err
		},
		extras: func(path, sum string) ([]string, error) {
			prov.File, prov.SHA256, prov.RecipeKey = filepath.Base(path), sum, key
			b, err := json.MarshalIndent(prov, "", "  ")
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(path+".provenance.json", append(b, '\n'), 0o644); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(path+".tools", 0o755); err != nil {
				return nil, err
			}
			for _, t := range []string{"kubectl", "kubeadm"} {
				if err := copyFile(filepath.Join(tools, t), NodeImageTool(path, t)); err != nil {
					return nil, err
				}
				if err := os.Chmod(NodeImageTool(path, t), 0o755); err != nil {
					return nil, err
				}
			}
			return []string{filepath.Base(path) + ".provenance.json", filepath.Base(path) + ".tools"}, nil
		},
	})
}

// nodeImageKey hashes every input of the node image: the recipes, the helper modules'
// go.mod/go.sum, the overlay, the Go code assembling it and the version of
// go-containerregistry it uses.
func nodeImageKey(root string) (string, error) {
	h := sha256.New()
	files := slices.Clone(nodeImageInputs)
	err := filepath.WalkDir(filepath.Join(root, "hack", "node-image"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		files = append(files, rel)
		return err
	})
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("node image input: %w", err)
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("node image input: %w", err)
		}
		fmt.Fprintf(h, "%s %o %d\n", f, fi.Mode().Perm(), len(b))
		h.Write(b)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(gomod)) {
		if strings.Contains(line, "github.com/google/go-containerregistry ") {
			h.Write([]byte(line))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// NodeImageProvenance is PATH.provenance.json: what the node image is made of.
type NodeImageProvenance struct {
	Image      string `json:"image"`
	File       string `json:"file"`
	SHA256     string `json:"sha256"`
	RecipeKey  string `json:"recipeKey"`
	Built      string `json:"built"`
	Kubernetes string `json:"kubernetesVersion"`
	// Components are the binaries built from source and the container images made of
	// them, with where each sits in the image.
	Components []NodeImageComponent `json:"components"`
	// DebianPackages are every package installed in the root filesystem, name=version.
	DebianPackages []string `json:"debianPackages"`
}

// NodeImageComponent is one file of the node image built by the recipe.
type NodeImageComponent struct {
	Name    string   `json:"name"`
	Version string   `json:"version,omitempty"`
	Source  string   `json:"source"`
	Path    string   `json:"path"`
	SHA256  string   `json:"sha256"`
	Layers  []string `json:"contains,omitempty"`
}

// buildNodeImage runs the recipe in work and writes the image to out.
func buildNodeImage(ctx context.Context, root, work, out string, log io.Writer) (*NodeImageProvenance, error) {
	start := time.Now()
	step := func(what string) {
		fmt.Fprintf(log, "node-image: %s %s (%v)\n", time.Now().Format(time.TimeOnly), what, time.Since(start).Round(time.Second))
	}
	k := filepath.Join(work, "k")
	if err := runImageScript(ctx, log, nil, "bash", filepath.Join(root, "hack", "node-image.sh"), k); err != nil {
		return nil, err
	}
	bin := filepath.Join(k, "bin")
	sources, err := readSources(filepath.Join(k, "sources"))
	if err != nil {
		return nil, err
	}
	images := NodeOCIImages(bin, filepath.Join(k, "iptables"))
	if err := checkKubeadmImages(ctx, filepath.Join(bin, "kubeadm"), images); err != nil {
		return nil, err
	}
	prov := &NodeImageProvenance{Image: NodeImageName, Built: time.Now().UTC().Format(time.RFC3339), Kubernetes: NodeKubernetesVersion}

	step("overlay")
	overlay := filepath.Join(work, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", filepath.Join(root, "hack", "node-image", "rootfs")+"/.", overlay+"/").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the overlay: %v: %s", err, out)
	}
	for _, b := range nodeImageHostBinaries {
		dst := filepath.Join(overlay, "usr", "local", "bin", b)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(bin, b), dst); err != nil {
			return nil, err
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return nil, err
		}
		c, err := component(b, sources[b], dst, "/usr/local/bin/"+b)
		if err != nil {
			return nil, err
		}
		prov.Components = append(prov.Components, c)
	}
	imgDir := filepath.Join(overlay, "var", "lib", "rackboot", "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return nil, err
	}
	for _, img := range images {
		step("container image " + img.Name)
		dst := filepath.Join(imgDir, img.FileName())
		if err := WriteOCIImage(dst, work, img); err != nil {
			return nil, fmt.Errorf("container image %s: %w", img.Name, err)
		}
		var contains []string
		for _, f := range img.Files {
			name := filepath.Base(f.Src)
			if f.Tree {
				name = "kube-proxy-image"
			}
			for _, s := range slices.Sorted(maps.Keys(sources)) {
				if s == name || strings.HasPrefix(s, name+":") {
					contains = append(contains, s+" "+sources[s])
				}
			}
		}
		c, err := component(img.Name, "container image built from source", dst, "containerd k8s.io namespace (loaded when the image is built, from "+img.FileName()+")")
		if err != nil {
			return nil, err
		}
		c.Version = img.Name[strings.LastIndex(img.Name, ":")+1:]
		c.Layers = contains
		prov.Components = append(prov.Components, c)
	}
	// The files only in container images still get an entry each: their sha256 is the
	// one to compare with a binary found in a running container.
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "etcdctl", "coredns", "pause"} {
		c, err := component(b, sources[b], filepath.Join(bin, b), "in its container image")
		if err != nil {
			return nil, err
		}
		prov.Components = append(prov.Components, c)
	}

	step("disk image (hack/lab-image.sh)")
	pkgs := filepath.Join(work, "packages")
	env := []string{
		"RACKBOOT_IMAGE_PACKAGES=" + nodeImagePackages,
		"RACKBOOT_IMAGE_OVERLAY=" + overlay,
		"RACKBOOT_IMAGE_SETUP=" + filepath.Join(root, "hack", "node-image", "setup.sh"),
		"RACKBOOT_IMAGE_PACKAGES_OUT=" + pkgs,
	}
	if err := runImageScript(ctx, log, env, "bash", filepath.Join(root, LabImageScript), out, filepath.Join(work, "w")); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(pkgs)
	if err != nil {
		return nil, err
	}
	prov.DebianPackages = strings.Fields(string(b))
	step("done")
	return prov, nil
}

// component describes one built file; source is "module@version …" from
// hack/node-image.sh's sources file.
func component(name, source, file, where string) (NodeImageComponent, error) {
	if source == "" {
		return NodeImageComponent{}, fmt.Errorf("node image: no source recorded for %s", name)
	}
	sum, err := fileSHA256(file)
	if err != nil {
		return NodeImageComponent{}, err
	}
	c := NodeImageComponent{Name: name, Source: source, Path: where, SHA256: sum}
	mod, _, _ := strings.Cut(source, " ")
	if _, v, ok := strings.Cut(mod, "@"); ok {
		c.Version, _, _ = strings.Cut(v, "/")
	} else if _, v, ok := strings.Cut(mod, "="); ok {
		c.Version = v
	}
	return c, nil
}

// readSources reads hack/node-image.sh's "NAME SOURCE" lines.
func readSources(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, src, ok := strings.Cut(sc.Text(), " "); ok {
			m[name] = src
		}
	}
	return m, sc.Err()
}

// checkKubeadmImages fails when the kubeadm just built expects other images than the
// ones the node image makes: a version bump in the helper modules must come with the
// constants above.
func checkKubeadmImages(ctx context.Context, kubeadm string, images []OCIImage) error {
	out, err := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", NodeKubernetesVersion).Output()
	if err != nil {
		return fmt.Errorf("kubeadm config images list: %w", err)
	}
	want := strings.Fields(string(out))
	var have []string
	for _, img := range images {
		have = append(have, img.Name)
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(want, have) {
		return fmt.Errorf("kubeadm %s wants the images %v, the node image makes %v: update the versions in internal/lab/nodeimage.go", NodeKubernetesVersion, want, have)
	}
	return nil
}

// nodeDiagnostics is the shell command whose output NodeDiagnostics returns (no single
// quotes: it runs inside sh -c '…').
const nodeDiagnostics = `uptime; free -m; systemctl --no-pager --failed; ` +
	`tail -n 30 /var/log/cloud-init-output.log; ` +
	`ctr -n k8s.io containers ls; ` +
	`for f in /var/log/pods/*/*/*.log; do echo "== $f"; tail -n 15 "$f"; done; ` +
	`journalctl --no-pager -u kubelet -u containerd -u rackboot-podnet | tail -n 60`

// NodeDiagnostics is what a failing Kubernetes test shows of a node made from the node
// image, read through SSH (key: a private key file; target: user@address) from inside n:
// load, failed units, the end of cloud-init's output, containers, the pods' logs and the
// kubelet's and containerd's journal. It never fails; an unreachable node says so.
func (n *Netns) NodeDiagnostics(key, target string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.Exec(ctx, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=20", "-o", "BatchMode=yes", target, "sudo sh -c '"+nodeDiagnostics+"'")
	return fmt.Sprintf("%s (ssh, %v):\n%s", target, err, out)
}
