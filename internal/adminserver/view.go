package adminserver

import (
	"net/url"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

// hostView copies what the API shows of h. Maps and slices are copied, so the view
// never aliases the store's value.
func hostView(h inventory.Host) admin.Host {
	c := h.Clone()
	v := admin.Host{
		ID: c.ID, MACs: c.MACs, Hostname: c.Hostname, IP: c.IP, Labels: c.Labels, Arch: c.Arch,
		Firmware: c.Firmware, State: c.State, StateReason: c.StateReason, Boot: c.Boot, Network: c.Network,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Revision: c.Revision,
	}
	if c.MACs == nil {
		v.MACs = []string{}
	}
	if c.BMC != nil {
		v.BMC = &admin.BMCInfo{URL: c.BMC.URL, PasswordSet: c.BMC.PasswordSet || c.BMC.Password != ""}
	}
	if !c.Claim.IsZero() {
		v.Claim = &admin.Claim{Owner: c.Claim.Owner, ClaimedAt: c.Claim.ClaimedAt}
	}
	if f := c.Facts; f != nil {
		v.Facts = &admin.Facts{Facts: provision.AgentFacts(f.Facts), ReportedAt: f.ReportedAt}
	}
	if p := c.Provision; p != nil {
		v.Provision = &admin.Provision{
			ID: p.ID, Image: p.Image, ImageSHA256: p.ImageSHA256, RootDisk: provision.AgentRootDisk(p.RootDisk),
			CloudInit: agentapi.CloudInitMode(p.CloudInit), Config: p.Config, Metadata: p.Metadata, Network: p.Network, InstallNetwork: p.InstallNetwork, Requester: p.Requester,
			RequestedAt: p.RequestedAt, BootMAC: p.BootMAC, HostIP: p.HostIP,
			WrittenDisk: p.WrittenDisk, WrittenSHA256: p.WrittenSHA256, BytesWritten: p.BytesWritten,
			WrittenAt: p.WrittenAt, PhonedHomeAt: p.PhonedHomeAt,
		}
	}
	if o := c.Operation; o != nil {
		v.Operation = &admin.Operation{
			State: o.State, Phase: o.Phase, Attempt: o.Attempt, StartedAt: o.StartedAt,
			Deadline: o.Deadline, RetryAt: o.RetryAt, PowerTries: o.PowerTries, Wipe: agentapi.WipeMode(o.Wipe),
			Boots: o.Boots, AgentIP: o.AgentIP, LastSeen: o.LastSeen, Plan: agentapi.Action(o.Plan), Progress: provision.AgentProgress(o.Progress),
		}
	}
	return v
}

func hostViews(hs []inventory.Host) []admin.Host {
	out := make([]admin.Host, len(hs))
	for i := range hs {
		out[i] = hostView(hs[i])
	}
	return out
}

func eventViews(es []inventory.Event) []admin.Event {
	out := make([]admin.Event, len(es))
	for i, e := range es {
		out[i] = admin.Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Message: e.Message, Fields: e.Fields}
	}
	return out
}

func leaseViews(ls []inventory.Lease) []admin.Lease {
	out := make([]admin.Lease, len(ls))
	for i, l := range ls {
		out[i] = admin.Lease{MAC: l.MAC, IP: l.IP, Hostname: l.Hostname, State: l.State, Expires: l.Expires, Updated: l.Updated}
	}
	return out
}

func imageView(im inventory.Image) admin.Image {
	return admin.Image{
		Name: im.Name, Source: redactURL(im.Source), SHA256: im.SHA256, SHA256URL: redactURL(im.SHA256URL),
		Format: agentapi.Format(im.Format), SourceFormat: im.SourceFormat, ServedSHA256: im.ServedSHA256, DiskSize: im.DiskSize, Size: im.Size,
		Status: im.Status, Error: im.Error, Phase: im.Phase, BytesDone: im.BytesDone, BytesTotal: im.BytesTotal, CreatedAt: im.CreatedAt,
		UpdatedAt: im.UpdatedAt, VerifiedAt: im.VerifiedAt, Revision: im.Revision,
	}
}

func imageViews(ims []inventory.Image) []admin.Image {
	out := make([]admin.Image, len(ims))
	for i := range ims {
		out[i] = imageView(ims[i])
	}
	return out
}

// redactURL hides the password of a download URL (https://user:pass@host/...), which
// an operator may give for a private mirror.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}
