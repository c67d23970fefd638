package controllers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Fatalf("%s (-want +got):\n%s", path, d)
	}
}

func TestCloudConfigWithAddition(t *testing.T) {
	bootstrap := []byte("## template: jinja\n#cloud-config\nruncmd:\n- kubeadm init --config /run/kubeadm/kubeadm.yaml\n")
	t.Run("NoAdditionIsVerbatim", func(t *testing.T) {
		got, err := CloudConfigWithAddition(bootstrap, "")
		if err != nil || !bytes.Equal(got, bootstrap) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("Multipart", func(t *testing.T) {
		addition := "#cloud-config\nruncmd:\n- echo extra\n"
		got, err := CloudConfigWithAddition(bootstrap, addition)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "userdata-multipart.golden", got)
		// What cloud-init will see: two parts, the bootstrap as a Jinja template.
		head, body, _ := bytes.Cut(got, []byte("\n\n"))
		_, params, err := mime.ParseMediaType(strings.TrimPrefix(strings.SplitN(string(head), "\n", 2)[0], "Content-Type: "))
		if err != nil {
			t.Fatal(err)
		}
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var types []string
		var datas [][]byte
		for {
			p, err := r.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			types = append(types, p.Header.Get("Content-Type"))
			datas = append(datas, b)
		}
		if d := cmp.Diff([]string{`text/jinja2; charset="utf-8"`, `text/cloud-config; charset="utf-8"`}, types); d != "" {
			t.Fatalf("part types (-want +got):\n%s", d)
		}
		if !bytes.Equal(datas[0], bootstrap) || string(datas[1]) != addition {
			t.Fatalf("parts changed: %q", datas)
		}
	})
	t.Run("NotCloudConfig", func(t *testing.T) {
		if _, err := CloudConfigWithAddition(bootstrap, "runcmd: []"); err == nil {
			t.Fatal("an addition without #cloud-config was accepted")
		}
	})
}

func TestIgnitionWithAddition(t *testing.T) {
	bootstrap := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/kubeadm.yml"}]}}`)
	render := func(b []byte) ([]byte, error) {
		if !strings.Contains(string(b), "variant: flatcar") {
			return nil, errors.New("not butane")
		}
		return []byte(`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"ops"}]}}`), nil
	}
	got, err := IgnitionWithAddition(bootstrap, "variant: flatcar\nversion: 1.1.0\n", render)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Ignition struct {
			Config struct {
				Merge []struct{ Source string } `json:"merge"`
			} `json:"config"`
		} `json:"ignition"`
		Passwd json.RawMessage `json:"passwd"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Ignition.Config.Merge) != 1 || doc.Passwd == nil {
		t.Fatalf("merged config %s", got)
	}
	src := doc.Ignition.Config.Merge[0].Source
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:;base64,"))
	if err != nil || !bytes.Equal(b, bootstrap) {
		t.Fatalf("merge source %q does not carry the bootstrap config (%v)", src, err)
	}
	if _, err := IgnitionWithAddition(bootstrap, "not butane", render); err == nil {
		t.Fatal("a Butane error was swallowed")
	}
	if same, _ := IgnitionWithAddition(bootstrap, " ", render); !bytes.Equal(same, bootstrap) {
		t.Fatal("no addition changed the bootstrap config")
	}
}
