package lab

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// OCIImage is a container image the node image carries, assembled from files built from
// source: one layer, a config with the entrypoint, environment and user the upstream
// image has (kubeadm's static-pod manifests call `kube-apiserver`, `etcd`, … by name
// through PATH; CoreDNS's Deployment runs /coredns; kube-proxy's DaemonSet runs
// /usr/local/bin/kube-proxy).
type OCIImage struct {
	// Name is the reference kubeadm asks for, e.g. registry.k8s.io/pause:3.10.2.
	Name       string
	Entrypoint []string
	Env        []string
	User       string
	// Files are put into the layer in this order.
	Files []OCIFile
}

// OCIFile is one file of an image's layer: Src, a file on the build host, at Path in the
// image; or with Tree set, the whole directory Src (symlinks kept) under Path.
type OCIFile struct {
	Src  string
	Path string
	Tree bool
}

// ociPath is the PATH of every node image container, as in the upstream images.
const ociPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// NodeOCIImages lists the images kubeadm init/join of the node image's Kubernetes
// version needs (the names of `kubeadm config images list`), made from the binaries in
// bin (hack/node-image.sh) and, for kube-proxy, Debian's iptables root in iptablesRoot.
func NodeOCIImages(bin, iptablesRoot string) []OCIImage {
	control := func(cmd string) OCIImage {
		return OCIImage{
			Name:       "registry.k8s.io/" + cmd + ":" + NodeKubernetesVersion,
			Entrypoint: []string{"/usr/local/bin/" + cmd},
			Env:        []string{ociPath},
			Files:      []OCIFile{{Src: filepath.Join(bin, cmd), Path: "/usr/local/bin/" + cmd}},
		}
	}
	proxy := control("kube-proxy")
	proxy.Files = append([]OCIFile{{Src: iptablesRoot, Path: "/", Tree: true}}, proxy.Files...)
	return []OCIImage{
		control("kube-apiserver"),
		control("kube-controller-manager"),
		control("kube-scheduler"),
		proxy,
		{
			Name:       "registry.k8s.io/etcd:" + NodeEtcdImageTag,
			Entrypoint: []string{"/usr/local/bin/etcd"},
			Env:        []string{ociPath},
			Files: []OCIFile{
				{Src: filepath.Join(bin, "etcd"), Path: "/usr/local/bin/etcd"},
				{Src: filepath.Join(bin, "etcdctl"), Path: "/usr/local/bin/etcdctl"},
			},
		},
		{
			Name:       "registry.k8s.io/coredns/coredns:" + NodeCoreDNSVersion,
			Entrypoint: []string{"/coredns"},
			Env:        []string{ociPath},
			Files:      []OCIFile{{Src: filepath.Join(bin, "coredns"), Path: "/coredns"}},
		},
		{
			Name:       "registry.k8s.io/pause:" + NodePauseVersion,
			Entrypoint: []string{"/pause"},
			User:       "65535:65535",
			Files:      []OCIFile{{Src: filepath.Join(bin, "pause"), Path: "/pause"}},
		},
	}
}

// FileName is the image's tarball name: its reference with / and : replaced.
func (img OCIImage) FileName() string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(img.Name) + ".tar"
}

// WriteOCIImage writes img as an image tarball (the `docker save` layout, which `ctr
// images import` and `docker load` read) at dst. scratch holds the layer while it is
// built.
func WriteOCIImage(dst, scratch string, img OCIImage) error {
	ref, err := name.NewTag(img.Name, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w", img.Name, err)
	}
	layerTar, err := os.CreateTemp(scratch, "layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(layerTar.Name())
	if err := writeLayerTar(layerTar, img.Files); err != nil {
		layerTar.Close()
		return fmt.Errorf("layer of %s: %w", img.Name, err)
	}
	if err := layerTar.Close(); err != nil {
		return err
	}
	// Fastest gzip: the build unpacks them into containerd's store right away.
	layer, err := tarball.LayerFromFile(layerTar.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return err
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Config:       v1.Config{Entrypoint: img.Entrypoint, Env: img.Env, User: img.User},
	})
	if err != nil {
		return err
	}
	image, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "rackboot node image: " + img.Name, Comment: "built from source"},
	})
	if err != nil {
		return err
	}
	return tarball.WriteToFile(dst, ref, image)
}

// layerEpoch is every file's time in the layers: the same inputs make the same digests.
var layerEpoch = time.Unix(0, 0).UTC()

// writeLayerTar writes files as a layer: root-owned, fixed times, directories created
// on the way.
func writeLayerTar(w io.Writer, files []OCIFile) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{"": true, ".": true}
	mkdirs := func(p string) error {
		var parts []string
		for d := path.Dir(p); !dirs[d] && d != "/"; d = path.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			dirs[parts[i]] = true
			mode := int64(0o755)
			if parts[i] == "tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parts[i] + "/", Mode: mode, ModTime: layerEpoch}); err != nil {
				return err
			}
		}
		return nil
	}
	// Every image gets /tmp (Go programs and etcd's tooling write there) and /etc/passwd
	// would be overkill: containers run with numeric users.
	if err := mkdirs("tmp/x"); err != nil {
		return err
	}
	add := func(src, dst string, fi fs.FileInfo) error {
		dst = strings.TrimPrefix(path.Clean(dst), "/")
		if dst == "" || dst == "." {
			return nil
		}
		if err := mkdirs(dst); err != nil {
			return err
		}
		hdr := &tar.Header{Name: dst, Mode: int64(fi.Mode().Perm()), ModTime: layerEpoch}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
			return tw.WriteHeader(hdr)
		case fi.IsDir():
			if dirs[dst] {
				return nil
			}
			dirs[dst] = true
			hdr.Typeflag, hdr.Name = tar.TypeDir, dst+"/"
			return tw.WriteHeader(hdr)
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		default:
			return fmt.Errorf("%s: unsupported file type %v", src, fi.Mode().Type())
		}
	}
	for _, f := range files {
		if !f.Tree {
			fi, err := os.Stat(f.Src)
			if err != nil {
				return err
			}
			if err := add(f.Src, f.Path, fi); err != nil {
				return err
			}
			continue
		}
		// WalkDir visits in lexical order, so a tree makes the same layer every time.
		err := filepath.WalkDir(f.Src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(f.Src, p)
			if err != nil {
				return err
			}
			return add(p, path.Join(f.Path, filepath.ToSlash(rel)), fi)
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// OCIImageInfo is what ReadOCIImage finds in an image tarball.
type OCIImageInfo struct {
	Tags       []string
	Entrypoint []string
	Env        []string
	User       string
	// Files maps each path in the layers (no leading slash) to its tar header.
	Files map[string]*tar.Header
}

// ReadOCIImage reads an image tarball back: its tags, config and the files of its layers.
func ReadOCIImage(p string) (*OCIImageInfo, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		return nil, err
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%s holds %d images, want 1", p, len(m))
	}
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	info := &OCIImageInfo{Tags: m[0].RepoTags, Entrypoint: cfg.Config.Entrypoint, Env: cfg.Config.Env, User: cfg.Config.User, Files: map[string]*tar.Header{}}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return nil, err
			}
			info.Files[strings.TrimSuffix(h.Name, "/")] = h
		}
		rc.Close()
	}
	return info, nil
}
