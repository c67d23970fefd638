package images

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Sample sums, derived from a label so the samples read like real files.
func sumsSHA256(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
func sumsSHA512(s string) string { h := sha512.Sum512([]byte(s)); return hex.EncodeToString(h[:]) }
func sumsMD5(s string) string    { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func TestParseSHA256Sums(t *testing.T) {
	qcow2, raw, vmdk := sumsSHA256("qcow2"), sumsSHA256("raw"), sumsSHA256("vmdk")

	ubuntu := strings.Join([]string{
		raw + " *noble-server-cloudimg-amd64-azure.vhd.tar.gz",
		qcow2 + " *noble-server-cloudimg-amd64.img",
		vmdk + " *noble-server-cloudimg-amd64.vmdk",
		sumsSHA256("tar") + " *noble-server-cloudimg-amd64.tar.gz",
		"",
	}, "\n")
	debian512 := sumsSHA512("qcow2") + "  debian-12-genericcloud-amd64.qcow2\n" +
		sumsSHA512("raw") + "  debian-12-genericcloud-amd64.raw\n"
	fedora := strings.Join([]string{
		"-----BEGIN PGP SIGNED MESSAGE-----",
		"Hash: SHA256",
		"",
		"# Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2: 491716608 bytes",
		"SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2) = " + qcow2,
		"# Fedora-Cloud-Base-Generic-41-1.4.x86_64.raw.xz: 402112512 bytes",
		"SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.raw.xz) = " + raw,
		"-----BEGIN PGP SIGNATURE-----",
		"",
		"iQIzBAEBCAAdFiEElRAAnotarealsignatureatallAAAAAAAAAAAAAAAAAAAAA",
		"SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2) = " + vmdk,
		"=Ab12",
		"-----END PGP SIGNATURE-----",
		"",
	}, "\n")

	tests := []struct {
		name    string
		data    string
		file    string
		want    string
		wantErr string
	}{
		{
			name: "Ubuntu SHA256SUMS, binary marks",
			data: ubuntu, file: "noble-server-cloudimg-amd64.img", want: qcow2,
		},
		{
			name: "base name of a URL path",
			data: ubuntu, file: "releases/noble/release/noble-server-cloudimg-amd64.img", want: qcow2,
		},
		{
			name: "GNU text mode, leading ./ on both sides",
			data: "# made with sha256sum\n\n" + raw + "  ./disk.raw\n" + qcow2 + "  ./disk.qcow2\n",
			file: "./disk.qcow2", want: qcow2,
		},
		{
			name: "exact match wins over base name",
			data: raw + "  amd64/disk.qcow2\n" + qcow2 + "  disk.qcow2\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name: "CRLF",
			data: raw + "  a.raw\r\n" + qcow2 + " *disk.qcow2\r\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name: "uppercase hex is lowercased",
			data: strings.ToUpper(qcow2) + "  disk.qcow2\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name: "escaped name with a backslash",
			data: `\` + qcow2 + `  dir\\disk.qcow2` + "\n" + raw + "  disk.qcow2\n",
			file: `dir\disk.qcow2`, want: qcow2,
		},
		{
			name: "escaped name with a newline",
			data: `\` + qcow2 + `  two\nlines.qcow2` + "\n",
			file: "two\nlines.qcow2", want: qcow2,
		},
		{
			name: "Fedora CHECKSUM, clearsigned, BSD style",
			data: fedora, file: "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2", want: qcow2,
		},
		{
			name: "shasum --tag",
			data: "SHA256 (disk.raw) = " + raw + "\nSHA256 (disk.qcow2) = " + qcow2 + "\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name: "tag file with several algorithms",
			data: "SHA512 (disk.qcow2) = " + sumsSHA512("qcow2") + "\nSHA256 (disk.qcow2) = " + qcow2 + "\nMD5 (disk.qcow2) = " + sumsMD5("qcow2") + "\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name: "openssl dgst",
			data: "SHA2-256(disk (1).qcow2)= " + qcow2 + "\n",
			file: "disk (1).qcow2", want: qcow2,
		},
		{
			name: "single bare sum",
			data: qcow2 + "\n",
			file: "anything.qcow2", want: qcow2,
		},
		{
			name: "single sum of standard input",
			data: qcow2 + "  -\n",
			file: "anything.qcow2", want: qcow2,
		},
		{
			name: "same sum twice",
			data: qcow2 + "  disk.qcow2\n" + qcow2 + " *./disk.qcow2\n",
			file: "disk.qcow2", want: qcow2,
		},
		{
			name:    "not listed",
			data:    ubuntu,
			file:    "jammy-server-cloudimg-amd64.img",
			wantErr: `checksum file has no entry for "jammy-server-cloudimg-amd64.img"; it lists "noble-server-cloudimg-amd64-azure.vhd.tar.gz", "noble-server-cloudimg-amd64.img", "noble-server-cloudimg-amd64.vmdk" and 1 more`,
		},
		{
			name:    "signature lines are not entries",
			data:    fedora,
			file:    "other.qcow2",
			wantErr: `checksum file has no entry for "other.qcow2"; it lists "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2", "Fedora-Cloud-Base-Generic-41-1.4.x86_64.raw.xz"`,
		},
		{
			name:    "two different sums",
			data:    qcow2 + "  disk.qcow2\n" + raw + "  disk.qcow2\n",
			file:    "disk.qcow2",
			wantErr: `checksum file lists different SHA-256 sums for "disk.qcow2": ` + qcow2 + ` (for "disk.qcow2") and ` + raw + ` (for "disk.qcow2")`,
		},
		{
			name:    "same base name in two directories",
			data:    qcow2 + "  amd64/disk.qcow2\n" + raw + "  arm64/disk.qcow2\n",
			file:    "disk.qcow2",
			wantErr: `checksum file lists different SHA-256 sums for "disk.qcow2": ` + qcow2 + ` (for "amd64/disk.qcow2") and ` + raw + ` (for "arm64/disk.qcow2")`,
		},
		{
			name:    "Debian SHA512SUMS",
			data:    debian512,
			file:    "debian-12-genericcloud-amd64.qcow2",
			wantErr: `checksum file lists a SHA-512 sum for "debian-12-genericcloud-amd64.qcow2" (128 hex digits), not a SHA-256: use the SHA-256 checksum file (often SHA256SUMS) or give the sum itself`,
		},
		{
			name:    "MD5SUMS",
			data:    sumsMD5("qcow2") + "  disk.qcow2\n",
			file:    "disk.qcow2",
			wantErr: `checksum file lists an MD5 sum for "disk.qcow2" (32 hex digits), not a SHA-256: use the SHA-256 checksum file (often SHA256SUMS) or give the sum itself`,
		},
		{
			name:    "not a checksum file",
			data:    "<html><body>Not Found</body></html>\n",
			file:    "disk.qcow2",
			wantErr: `checksum file lists no checksums (no line in a GNU sha256sum or BSD "SHA256 (name) = sum" format)`,
		},
		{
			name:    "tag with a sum of the wrong length",
			data:    "SHA256 (disk.qcow2) = " + sumsSHA512("qcow2") + "\n",
			file:    "disk.qcow2",
			wantErr: `checksum file lists no checksums (no line in a GNU sha256sum or BSD "SHA256 (name) = sum" format)`,
		},
		{
			name:    "no name asked",
			data:    qcow2 + "\n",
			file:    "",
			wantErr: "checksum file: no file name to look up",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSHA256Sums([]byte(tc.data), tc.file)
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("sum (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseSHA256Sums checks that no input panics and that a sum returned is SHA-256 hex.
func FuzzParseSHA256Sums(f *testing.F) {
	f.Add([]byte(sumsSHA256("x")+"  disk.qcow2\n"), "disk.qcow2")
	f.Add([]byte("SHA256 (disk.qcow2) = "+sumsSHA256("x")+"\n"), "disk.qcow2")
	f.Add([]byte(`\`+sumsSHA256("x")+`  a\\b\n`), `a\b`)
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- "+sumsSHA256("x")+"  d\n-----BEGIN PGP SIGNATURE-----\n"), "d")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		sum, err := ParseSHA256Sums(data, name)
		if err != nil {
			return
		}
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			t.Fatalf("returned %q, not lowercase SHA-256 hex", sum)
		}
	})
}
