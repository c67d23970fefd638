package metadata

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/internal/inventory"
)

// FuzzMetadataPath asks for arbitrary token and document names, from the host's address
// and from another: never a panic or a 500, and the user-data only with the host's token
// from the host's address.
func FuzzMetadataPath(f *testing.F) {
	for _, s := range [][2]string{
		{testToken, DocUserData}, {testToken, DocMetaData}, {testToken, "../user-data"},
		{"short", DocUserData}, {strings.Repeat("A", 200), DocIgnition}, {testToken + "%00", DocPhoneHome},
		{"", ""}, {testToken, "user-data/"},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	st := &fakeStore{host: testHost(), data: inventory.ProvisionData{ProvisionID: "3f9a2c7d1e0b4a55", Kind: inventory.ConfigCloudConfig,
		UserData: []byte("#cloud-config\nruncmd: [kubeadm-secret]\n")}}
	h, err := NewHandler(Config{Store: st, Gate: testGate(f, st), ServerURL: "http://10.0.0.1:8080"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token, doc string, fromHost bool) {
		r := httptest.NewRequest("GET", "/metadata/x/y", nil)
		r.SetPathValue("token", token)
		r.SetPathValue("doc", doc)
		r.RemoteAddr = otherIP + ":5000"
		if fromHost {
			r.RemoteAddr = hostIP + ":5000"
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("token %q doc %q: %d", token, doc, w.Code)
		}
		if strings.Contains(w.Body.String(), "kubeadm-secret") && !(fromHost && token == testToken && doc == DocUserData) {
			t.Fatalf("token %q doc %q from host %v got the user-data", token, doc, fromHost)
		}
	})
}
