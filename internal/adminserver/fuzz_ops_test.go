package adminserver

import (
	"context"
	"testing"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

// acceptingBackends stand in for the BMC service and the provisioner: they accept
// whatever the handler passes on and change nothing, so a fuzz input exercises the
// API's own decoding and validation of the request bodies.
type acceptingBackends struct{ store inventory.Store }

func (b acceptingBackends) PowerStatus(_ context.Context, id string) (bmc.Result, error) {
	return bmc.Result{HostID: id, Operation: "power_status", State: "on"}, nil
}
func (b acceptingBackends) Power(_ context.Context, id string, _ bmc.PowerAction) (bmc.Result, error) {
	return bmc.Result{HostID: id, Operation: "power"}, nil
}
func (b acceptingBackends) SetBootDevice(_ context.Context, id string, _ bmc.BootOptions) (bmc.Result, error) {
	return bmc.Result{HostID: id, Operation: "bootdev"}, nil
}
func (b acceptingBackends) Inspect(ctx context.Context, id string, _ provision.Options) (inventory.Host, error) {
	return b.store.GetHost(ctx, id)
}
func (b acceptingBackends) Provision(ctx context.Context, id string, _ provision.Request) (inventory.Host, error) {
	return b.store.GetHost(ctx, id)
}
func (b acceptingBackends) Release(ctx context.Context, id string, _ provision.ReleaseOptions) (inventory.Host, error) {
	return b.store.GetHost(ctx, id)
}
func (b acceptingBackends) Retry(ctx context.Context, id string, _ provision.Options) (inventory.Host, error) {
	return b.store.GetHost(ctx, id)
}
func (b acceptingBackends) Watch(ctx context.Context, id string, _ uint64) (inventory.Host, error) {
	return b.store.GetHost(ctx, id)
}

// FuzzOperationBodies drives the request bodies of the BMC, provisioning and image
// routes: any body gets a JSON answer below 500, never a password or token material,
// and a refused one writes nothing.
func FuzzOperationBodies(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"url":"ipmi://admin@10.0.0.9:623","password":"pw"}`},
		{0, `{"url":"redfish+http://root@10.0.0.9:8000"}`},
		{0, `{"url":"http://x","password":"pw"}`},
		{0, `{"url":""}`},
		{1, `{"action":"cycle"}`},
		{1, `{"action":"explode"}`},
		{2, `{"device":"pxe","persistent":true,"uefi":false}`},
		{2, `{"device":"floppy"}`},
		{3, `{"owner":"default/m1","force":true}`},
		{3, ``},
		{4, `{"image":"debian-12","rootDisk":"min=100G,largest","userData":"#cloud-config\n","labels":{"a":"b"},"cloudInit":"dropin"}`},
		{4, `{"image":"","rootDisk":"size=huge"}`},
		{4, `{"image":"x","rootDisk":"min=-1G"}`},
		{5, `{"wipe":"quick","owner":"o"}`},
		{5, `{"wipe":"shred"}`},
		{6, `{"owner":1}`},
		{7, `{"name":"debian-12","url":"https://mirror.example.net/d.raw.xz","sha256":"` + "aa" + `","format":"xz"}`},
		{7, `{"name":"../etc","url":"file:///etc/shadow"}`},
		{7, `{"name":"x","extra":true}`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	store := openTestStore(f)
	be := acceptingBackends{store: store}
	h, err := NewHandler(Config{Store: store, Token: testToken, BMC: be, Provisioner: be, Images: fixedCatalog{}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := store.CreateHosts(context.Background(), inventory.Host{ID: "web1", MACs: []string{"52:54:00:00:00:01"},
		BMC: &inventory.BMC{URL: "ipmi://admin@10.0.0.1", Password: "fuzz-secret"}}); err != nil {
		f.Fatal(err)
	}
	e := &fuzzEnv{store: store, handler: h}
	routes := []struct{ method, path string }{
		{"PUT", "/api/v1/hosts/web1/bmc"},
		{"PATCH", "/api/v1/hosts/web1"},
		{"POST", "/api/v1/hosts/web1/power"},
		{"POST", "/api/v1/hosts/web1/bootdev"},
		{"POST", "/api/v1/hosts/web1/inspect"},
		{"POST", "/api/v1/hosts/web1/provision"},
		{"POST", "/api/v1/hosts/web1/release"},
		{"POST", "/api/v1/hosts/web1/retry"},
		{"POST", "/api/v1/images"},
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		e.check(t, r.method, r.path, body)
	})
}
