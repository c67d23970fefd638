package packaging

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestDistOCIImage reads the image back: the OCI layout's index validates (every digest
// and size checked) and holds linux/amd64 and linux/arm64; each image's entrypoint is the
// binary, which its layer carries byte for byte, and this machine's runs `version`; the
// docker-load tarball is the same image; and skopeo, a real OCI tool, inspects both.
func TestDistOCIImage(t *testing.T) {
	dist := needDist(t)
	version := distVersion(t, dist)
	p, err := layout.FromPath(filepath.Join(dist, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	outer, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Manifests) != 1 || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("oci/index.json: want one index tagged %s, got %+v", version, om.Manifests)
	}
	idx, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("OCI index does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	for _, d := range im.Manifests {
		arches = append(arches, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, dist, d.Platform.Architecture, version, img)
		if d.Platform.Architecture == runtime.GOARCH {
			fromTar, err := tarball.ImageFromPath(filepath.Join(dist, "rackboot-image-linux-"+runtime.GOARCH+".tar"), nil)
			if err != nil {
				t.Fatal(err)
			}
			// The manifests differ (docker media types in the tarball), the config
			// (and so every layer's diff ID) is the same.
			want, _ := img.ConfigName()
			if got, err := fromTar.ConfigName(); err != nil || got != want {
				t.Errorf("docker-load tarball's image config is %v (%v), the OCI layout's is %v", got, err, want)
			}
		}
	}
	slices.Sort(arches)
	if !slices.Equal(arches, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %v, want linux/amd64 and linux/arm64", arches)
	}

	skopeo := needTool(t, "skopeo")
	out := run(t, skopeo, "inspect", "--override-arch", "arm64", "oci:"+filepath.Join(dist, "oci")+":"+version)
	if !strings.Contains(out, `"Architecture": "arm64"`) || !strings.Contains(out, `"org.opencontainers.image.version": "`+version+`"`) {
		t.Errorf("skopeo inspect oci:dist/oci:%s (arm64):\n%s", version, out)
	}
	out = run(t, skopeo, "inspect", "--config", "docker-archive:"+filepath.Join(dist, "rackboot-image-linux-amd64.tar"))
	if !strings.Contains(out, `"/usr/bin/rackboot"`) {
		t.Errorf("skopeo inspect --config docker-archive: no entrypoint /usr/bin/rackboot:\n%s", out)
	}
}

func checkImage(t *testing.T, dist, arch, version string, img v1.Image) {
	t.Helper()
	if err := validate.Image(img); err != nil {
		t.Errorf("%s image does not validate: %v", arch, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("%s image config says %s/%s", arch, cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/bin/rackboot"}) || !slices.Equal(cf.Config.Cmd, []string{"serve", "--data-dir", "/var/lib/rackboot"}) {
		t.Errorf("%s image runs %q %q, want /usr/bin/rackboot serve --data-dir /var/lib/rackboot", arch, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if got := cf.Config.Labels["org.opencontainers.image.version"]; got != version {
		t.Errorf("%s image version label %q, want %s", arch, got, version)
	}
	// The binary in the image is the released one.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var bin []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "usr/bin/rackboot" {
			if h.Mode&0o111 == 0 {
				t.Errorf("%s image: /usr/bin/rackboot mode %o is not executable", arch, h.Mode)
			}
			if bin, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := os.ReadFile(filepath.Join(dist, "rackboot-linux-"+arch))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(bin) != sha256.Sum256(want) {
		t.Fatalf("%s image: /usr/bin/rackboot (%d bytes) is not dist/rackboot-linux-%s", arch, len(bin), arch)
	}
	if arch == runtime.GOARCH {
		f := filepath.Join(t.TempDir(), "rackboot")
		if err := os.WriteFile(f, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if out := run(t, f, "version"); !bytes.Contains([]byte(out), []byte(version)) {
			t.Errorf("the image's rackboot version = %q, want %s", out, version)
		}
	}
}
