package lab

import (
	"archive/tar"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNodeOCIImages writes every container image of the node image from stand-in
// binaries and reads each tarball back the way an importer does: one image per tar,
// tagged with the name kubeadm asks for, the upstream entrypoint, and its files in the
// layer with their modes (kube-proxy's Debian root with its symlinks).
func TestNodeOCIImages(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	ipt := filepath.Join(dir, "iptables")
	for _, d := range []string{bin, filepath.Join(ipt, "usr", "sbin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "etcdctl", "coredns", "pause"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/true "+b+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ipt, "usr", "sbin", "xtables-nft-multi"), []byte("elf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("xtables-nft-multi", filepath.Join(ipt, "usr", "sbin", "iptables-restore")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/sbin", filepath.Join(ipt, "sbin")); err != nil {
		t.Fatal(err)
	}

	want := map[string]struct {
		entrypoint []string
		user       string
		files      []string
	}{
		"registry.k8s.io/kube-apiserver:v1.36.4":          {[]string{"/usr/local/bin/kube-apiserver"}, "", []string{"usr/local/bin/kube-apiserver"}},
		"registry.k8s.io/kube-controller-manager:v1.36.4": {[]string{"/usr/local/bin/kube-controller-manager"}, "", []string{"usr/local/bin/kube-controller-manager"}},
		"registry.k8s.io/kube-scheduler:v1.36.4":          {[]string{"/usr/local/bin/kube-scheduler"}, "", []string{"usr/local/bin/kube-scheduler"}},
		"registry.k8s.io/kube-proxy:v1.36.4":              {[]string{"/usr/local/bin/kube-proxy"}, "", []string{"usr/local/bin/kube-proxy", "usr/sbin/xtables-nft-multi", "usr/sbin/iptables-restore", "sbin"}},
		"registry.k8s.io/etcd:3.6.8-0":                    {[]string{"/usr/local/bin/etcd"}, "", []string{"usr/local/bin/etcd", "usr/local/bin/etcdctl"}},
		"registry.k8s.io/coredns/coredns:v1.14.2":         {[]string{"/coredns"}, "", []string{"coredns"}},
		"registry.k8s.io/pause:3.10.2":                    {[]string{"/pause"}, "65535:65535", []string{"pause"}},
	}
	images := NodeOCIImages(bin, ipt)
	if len(images) != len(want) {
		t.Fatalf("NodeOCIImages made %d images, want %d", len(images), len(want))
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		t.Run(img.Name, func(t *testing.T) {
			w, ok := want[img.Name]
			if !ok {
				t.Fatalf("unexpected image %s", img.Name)
			}
			p := filepath.Join(out, img.FileName())
			if err := WriteOCIImage(p, dir, img); err != nil {
				t.Fatal(err)
			}
			info, err := ReadOCIImage(p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{img.Name}, info.Tags); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(w.entrypoint, info.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if info.User != w.user {
				t.Errorf("user %q, want %q", info.User, w.user)
			}
			if img.Name != "registry.k8s.io/pause:3.10.2" && !slices.Contains(info.Env, ociPath) {
				t.Errorf("env %v lacks %s", info.Env, ociPath)
			}
			for _, f := range w.files {
				h, ok := info.Files[f]
				if !ok {
					t.Errorf("%s missing from the layer; it has %v", f, slices.Sorted(maps.Keys(info.Files)))
					continue
				}
				if h.Uid != 0 || h.Gid != 0 {
					t.Errorf("%s owned by %d:%d, want root", f, h.Uid, h.Gid)
				}
				switch h.Typeflag {
				case tar.TypeReg:
					if h.Mode&0o111 == 0 {
						t.Errorf("%s has mode %o, want executable", f, h.Mode)
					}
				case tar.TypeSymlink:
				default:
					t.Errorf("%s has type %c", f, h.Typeflag)
				}
			}
			if h := info.Files["tmp"]; h == nil || h.Mode != 0o1777 {
				t.Errorf("/tmp missing or not 1777: %+v", h)
			}
			if h := info.Files["usr/sbin/iptables-restore"]; h != nil && h.Linkname != "xtables-nft-multi" {
				t.Errorf("iptables-restore links to %q", h.Linkname)
			}
			// The same inputs make the same tarball: the image's cache key is honest.
			again := p + ".again"
			if err := WriteOCIImage(again, dir, img); err != nil {
				t.Fatal(err)
			}
			s1, _ := fileSHA256(p)
			s2, _ := fileSHA256(again)
			if s1 != s2 {
				t.Errorf("two writes of %s differ: %s %s", img.Name, s1, s2)
			}
		})
	}
}
