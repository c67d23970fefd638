package tftp

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means refused
	}{
		{"undionly.kpxe", "undionly.kpxe"},
		{"/undionly.kpxe", "undionly.kpxe"},
		{"//snponly.efi", "snponly.efi"},
		{"arm64-efi/snponly.efi", "arm64-efi/snponly.efi"},
		{"/pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56"},
		{"", ""},
		{"/", ""},
		{".", ""},
		{"..", ""},
		{"../etc/passwd", ""},
		{"/../etc/passwd", ""},
		{"/../../../../etc/shadow", ""},
		{"a/../../b", ""},
		{"a/./b", ""},
		{"a//b", ""},
		{"a/", ""},
		{`..\..\windows\win.ini`, ""},
		{`a\b`, ""},
		{"a\x00.efi", ""},
		{"snponly.efi\x00../../etc/passwd", ""},
		{"a\nb", ""},
		{"a\x7fb", ""},
		{"\xff\xfe", ""},
		{strings.Repeat("a", MaxPathLen), strings.Repeat("a", MaxPathLen)},
		{strings.Repeat("a", MaxPathLen+1), ""},
		{"ünïcode.efi", "ünïcode.efi"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CleanPath(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("CleanPath(%q) = %q, want a refusal", tc.in, got)
				}
				if !errors.Is(err, ErrBadPath) {
					t.Errorf("error %v does not wrap ErrBadPath", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzCleanPath checks that whatever CleanPath accepts is a clean, relative fs.FS name
// that cannot leave the served tree, and that cleaning is idempotent. The seed corpus
// (below and in testdata/fuzz/FuzzCleanPath) runs with every go test.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"undionly.kpxe", "/snponly.efi", "arm64-efi/snponly.efi", "../etc/passwd", "/../",
		"a/../../b", `..\x`, "a\x00b", "//", ".", "....//", "a/b/c/../../..", "%2e%2e/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanPath(name)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("CleanPath(%q): error %v does not wrap ErrBadPath", name, err)
			}
			return
		}
		if !fs.ValidPath(got) || got == "." {
			t.Fatalf("CleanPath(%q) = %q, not a valid fs.FS name", name, got)
		}
		if path.Clean("/"+got) != "/"+got {
			t.Fatalf("CleanPath(%q) = %q, not clean", name, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("CleanPath(%q) = %q has segment %q", name, got, seg)
			}
		}
		if strings.ContainsAny(got, "\\\x00") || strings.HasPrefix(got, "/") || len(got) > MaxPathLen {
			t.Fatalf("CleanPath(%q) = %q", name, got)
		}
		again, err := CleanPath(got)
		if err != nil || again != got {
			t.Fatalf("CleanPath not idempotent: %q -> %q -> %q, %v", name, got, again, err)
		}
	})
}
