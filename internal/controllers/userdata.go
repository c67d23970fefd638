package controllers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// CloudConfigWithAddition returns the user-data for a cloud-config machine: the
// bootstrap data alone, or with the operator's addition as a MIME multipart that
// cloud-init assembles. The bootstrap part keeps CABPK's "## template: jinja" header
// working (text/jinja2: cloud-init renders it, then handles the result as a
// cloud-config); the addition part merges into it, appending to lists such as runcmd
// and write_files instead of replacing them.
func CloudConfigWithAddition(bootstrap []byte, addition string) ([]byte, error) {
	if strings.TrimSpace(addition) == "" {
		return bootstrap, nil
	}
	if !strings.HasPrefix(addition, "#cloud-config") {
		return nil, fmt.Errorf("spec.userDataAdditions.cloudConfig must start with #cloud-config")
	}
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	// A fixed boundary keeps the output a pure function of the input (golden tests,
	// and no needless re-provisioning diffs); it cannot occur in either part.
	boundary := "rackboot-user-data-boundary"
	for bytes.Contains(bootstrap, []byte(boundary)) || strings.Contains(addition, boundary) {
		boundary += "-x"
	}
	if err := w.SetBoundary(boundary); err != nil {
		return nil, err
	}
	parts := []struct {
		header textproto.MIMEHeader
		data   []byte
	}{
		{textproto.MIMEHeader{
			"Content-Type":        {bootstrapContentType(bootstrap)},
			"Content-Disposition": {`attachment; filename="bootstrap"`},
		}, bootstrap},
		{textproto.MIMEHeader{
			"Content-Type":        {`text/cloud-config; charset="utf-8"`},
			"Content-Disposition": {`attachment; filename="rackboot-addition"`},
			"Merge-Type":          {"list(append)+dict(no_replace,recurse_list)+str()"},
		}, []byte(addition)},
	}
	for _, p := range parts {
		pw, err := w.CreatePart(p.header)
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write(p.data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	head := "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\nMIME-Version: 1.0\n\n"
	return append([]byte(head), body.Bytes()...), nil
}

func bootstrapContentType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("## template: jinja")):
		return `text/jinja2; charset="utf-8"`
	case bytes.HasPrefix(b, []byte("#!")):
		return `text/x-shellscript; charset="utf-8"`
	}
	return `text/cloud-config; charset="utf-8"`
}

// IgnitionWithAddition returns the Ignition config for an ignition machine: the
// bootstrap config alone, or the operator's Butane addition rendered (by render, the
// metadata package's RenderButane) with the bootstrap config merged in through
// ignition.config.merge as a data URL, so Ignition applies both.
func IgnitionWithAddition(bootstrap []byte, butane string, render func([]byte) ([]byte, error)) ([]byte, error) {
	if strings.TrimSpace(butane) == "" {
		return bootstrap, nil
	}
	ign, err := render([]byte(butane))
	if err != nil {
		return nil, fmt.Errorf("spec.userDataAdditions.butane: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(ign, &doc); err != nil {
		return nil, fmt.Errorf("spec.userDataAdditions.butane rendered to unreadable Ignition: %w", err)
	}
	ignSection, _ := doc["ignition"].(map[string]any)
	if ignSection == nil {
		ignSection = map[string]any{}
		doc["ignition"] = ignSection
	}
	cfg, _ := ignSection["config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
		ignSection["config"] = cfg
	}
	merge, _ := cfg["merge"].([]any)
	cfg["merge"] = append(merge, map[string]any{
		"source": "data:;base64," + base64.StdEncoding.EncodeToString(bootstrap),
	})
	return json.Marshal(doc)
}
