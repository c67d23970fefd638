package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image runs serve with its state in a volume. Give it the host's network (DHCP and
// PXE need the provisioning segment itself) and the same two capabilities as the unit:
//
//	docker run --network host --cap-add NET_BIND_SERVICE --cap-add NET_RAW \
//	  -v /etc/rackboot:/etc/rackboot:ro -v rackboot:/var/lib/rackboot IMAGE \
//	  serve --config /etc/rackboot/config.yaml --data-dir /var/lib/rackboot
//
// In a management cluster's pod, `rackboot serve --rack R` uses the in-cluster config.
const (
	imageBinary  = "/usr/bin/rackboot"
	imageDataDir = "/var/lib/rackboot"
)

// imageTarName is the per-architecture `docker load` tarball.
func imageTarName(arch string) string { return "rackboot-image-linux-" + arch + ".tar" }

func writeImages(r release) error {
	tag, err := name.NewTag(r.image+":"+r.version, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--image: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range r.arches {
		img, err := image(r, arch)
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
		if err := tarball.WriteToFile(filepath.Join(r.out, imageTarName(arch)), tag, img); err != nil {
			return err
		}
	}
	dir := filepath.Join(r.out, "oci")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// The ref.name annotation is the tag OCI tools resolve: skopeo oci:dist/oci:VERSION.
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": r.version,
		"io.containerd.image.name":          tag.Name(),
	}))
}

// image is the binary in one layer with its data directory, for one architecture.
func image(r release, arch string) (v1.Image, error) {
	bin, err := os.ReadFile(r.binary(arch))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/bin/rackboot", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
		{Name: "var/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "var/lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "var/lib/rackboot/", Typeflag: tar.TypeDir, Mode: 0o700},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/rackboot/", Typeflag: tar.TypeDir, Mode: 0o755},
	} {
		h.ModTime, h.Format = r.mtime, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: r.mtime}, CreatedBy: "make dist", Comment: "rackboot " + r.version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: r.mtime}
	cf.Config.Entrypoint = []string{imageBinary}
	cf.Config.Cmd = []string{"serve", "--data-dir", imageDataDir}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.WorkingDir = "/"
	cf.Config.Volumes = map[string]struct{}{imageDataDir: {}}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "rackboot",
		"org.opencontainers.image.version":  r.version,
		"org.opencontainers.image.revision": r.commit,
		"org.opencontainers.image.source":   "https://github.com/rackboot/rackboot",
	}
	return mutate.ConfigFile(img, cf)
}
