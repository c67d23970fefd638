package images

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// ParseSHA256Sums returns, in lowercase hex, the SHA-256 that a published checksum
// file (data) lists for the file name, so an operator can point rackboot at a
// distribution's SHA256SUMS or CHECKSUM instead of copying a sum by hand.
//
// It reads the formats distributions publish:
//   - GNU coreutils (sha256sum): "<hex>  name", or "<hex> *name" for binary mode, with
//     names escaped as sha256sum writes them (a leading backslash, then \\, \n, \r);
//   - BSD and shasum --tag: "SHA256 (name) = <hex>" (also openssl's "SHA2-256(name)= <hex>");
//   - a file holding a single sum and no name;
//
// with CRLF line ends, blank lines and # comments, and a PGP clearsigned wrapper
// (Fedora's CHECKSUM) whose armour header and signature are skipped. A leading "./" is
// ignored; if no entry has exactly name, the one with the same base name is taken
// (Debian, Ubuntu and Fedora list bare file names, an operator may give a URL path).
//
// It fails, saying why, when name is not listed (naming up to three files that are),
// when two entries give it different sums, or when the sum listed is no SHA-256 (a
// SHA-512, SHA-1 or MD5, as in Debian's SHA512SUMS).
func ParseSHA256Sums(data []byte, name string) (string, error) {
	want := strings.TrimPrefix(name, "./")
	if want == "" {
		return "", fmt.Errorf("checksum file: no file name to look up")
	}
	entries := sumsParse(data)
	if len(entries) == 0 {
		return "", fmt.Errorf("checksum file lists no checksums (no line in a GNU sha256sum or BSD \"SHA256 (name) = sum\" format)")
	}

	var matches []sumsEntry
	if len(entries) == 1 && (entries[0].name == "" || entries[0].name == "-") {
		// A bare sum, or one of standard input: it is meant for the file asked about.
		matches = entries
	} else {
		for _, e := range entries {
			if e.name == want {
				matches = append(matches, e)
			}
		}
		if len(matches) == 0 {
			base := path.Base(want)
			for _, e := range entries {
				if e.name != "" && path.Base(e.name) == base {
					matches = append(matches, e)
				}
			}
		}
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("checksum file has no entry for %q; it lists %s", name, sumsListNames(entries, 3))
	}

	var found *sumsEntry
	for i, e := range matches {
		if e.algo != "SHA-256" {
			continue
		}
		if found != nil && found.sum != e.sum {
			return "", fmt.Errorf("checksum file lists different SHA-256 sums for %q: %s (for %q) and %s (for %q)",
				name, found.sum, found.name, e.sum, e.name)
		}
		if found == nil {
			found = &matches[i]
		}
	}
	if found == nil {
		e := matches[0]
		article := "a"
		if e.algo == "MD5" {
			article = "an"
		}
		return "", fmt.Errorf("checksum file lists %s %s sum for %q (%d hex digits), not a SHA-256: use the SHA-256 checksum file (often SHA256SUMS) or give the sum itself",
			article, e.algo, name, len(e.sum))
	}
	return found.sum, nil
}

// sumsEntry is one checksum line.
type sumsEntry struct {
	name string // unescaped, without a leading "./"; "" for a bare sum
	algo string // "SHA-256", "SHA-512", "MD5", ...; from the tag, else from the length
	sum  string // lowercase hex
}

// sumsParse returns the checksum entries of data, skipping what is not one: comments,
// blank lines, the PGP armour and lines of other text.
func sumsParse(data []byte) []sumsEntry {
	var entries []sumsEntry
	const (
		text = iota
		armourHeaders
		signature
	)
	state, signed := text, false
	for raw := range bytes.Lines(data) {
		line := strings.TrimRight(string(raw), "\r\n")
		switch state {
		case armourHeaders:
			// "Hash: SHA256" and the like, up to a blank line.
			if strings.TrimSpace(line) == "" {
				state = text
			}
			continue
		case signature:
			if strings.TrimSpace(line) == "-----END PGP SIGNATURE-----" {
				state = text
			}
			continue
		}
		switch strings.TrimSpace(line) {
		case "-----BEGIN PGP SIGNED MESSAGE-----":
			state, signed = armourHeaders, true
			continue
		case "-----BEGIN PGP SIGNATURE-----":
			state = signature
			continue
		}
		if signed {
			// Clearsigned text escapes lines that start with a dash (RFC 4880 7.1).
			line = strings.TrimPrefix(line, "- ")
		}
		if e, ok := sumsParseLine(line); ok {
			entries = append(entries, e)
		}
	}
	return entries
}

// sumsParseLine parses one line in GNU or BSD (tag) format.
func sumsParseLine(line string) (sumsEntry, bool) {
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return sumsEntry{}, false
	}
	// sha256sum starts a line with a backslash when it escaped the name.
	escaped := line[0] == '\\'
	if escaped {
		line = line[1:]
	}

	var e sumsEntry
	if algo, name, sum, ok := sumsSplitTag(line); ok {
		e = sumsEntry{name: name, algo: algo, sum: sum}
	} else {
		n := 0
		for n < len(line) && sumsIsHex(line[n]) {
			n++
		}
		e.sum = line[:n]
		e.algo = sumsAlgoByLength(len(e.sum))
		rest := line[n:]
		switch {
		case e.algo == "":
			return sumsEntry{}, false
		case strings.TrimSpace(rest) == "":
			// A bare sum.
		case rest[0] == ' ' || rest[0] == '\t':
			// "  name" (text mode) or " *name" (binary mode); a single space is
			// accepted too, as some tools write it.
			rest = rest[1:]
			if rest != "" && (rest[0] == ' ' || rest[0] == '*') {
				rest = rest[1:]
			}
			e.name = strings.TrimRight(rest, " \t")
		default:
			return sumsEntry{}, false
		}
	}
	if escaped {
		name, ok := sumsUnescape(e.name)
		if !ok {
			return sumsEntry{}, false
		}
		e.name = name
	}
	e.name = strings.TrimPrefix(e.name, "./")
	e.sum = strings.ToLower(e.sum)
	return e, true
}

// sumsSplitTag splits "ALGO (name) = hex" and openssl's "ALGO(name)= hex".
func sumsSplitTag(line string) (algo, name, sum string, ok bool) {
	open := strings.IndexByte(line, '(')
	closing := strings.LastIndexByte(line, ')')
	if open <= 0 || closing < open {
		return "", "", "", false
	}
	after := strings.TrimLeft(line[closing+1:], " ")
	if !strings.HasPrefix(after, "=") {
		return "", "", "", false
	}
	sum = strings.TrimSpace(after[1:])
	if sum == "" || strings.IndexFunc(sum, func(r rune) bool { return r > 0x7f || !sumsIsHex(byte(r)) }) >= 0 {
		return "", "", "", false
	}
	tag := strings.ToUpper(strings.TrimRight(line[:open], " "))
	if tag == "" || strings.ContainsAny(tag, " \t") {
		return "", "", "", false
	}
	// SHA256, SHA-256 and openssl 3's SHA2-256 all mean SHA-256.
	tag = strings.ReplaceAll(strings.Replace(tag, "SHA2-", "SHA", 1), "-", "")
	switch {
	case tag == "MD5":
		algo = "MD5"
	case strings.HasPrefix(tag, "SHA") && len(tag) > 3:
		algo = "SHA-" + tag[3:]
	default:
		algo = tag
	}
	if sumsAlgoByLength(len(sum)) != algo {
		// A digest this parser does not know, or one of the wrong length.
		return "", "", "", false
	}
	return algo, line[open+1 : closing], sum, true
}

// sumsAlgoByLength names the digest a GNU-format line of n hex digits holds.
func sumsAlgoByLength(n int) string {
	switch n {
	case 32:
		return "MD5"
	case 40:
		return "SHA-1"
	case 56:
		return "SHA-224"
	case 64:
		return "SHA-256"
	case 96:
		return "SHA-384"
	case 128:
		return "SHA-512"
	}
	return ""
}

func sumsIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// sumsUnescape undoes sha256sum's escaping of \, newline and carriage return.
func sumsUnescape(s string) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", false
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// sumsListNames quotes up to n of the names listed, for an error message.
func sumsListNames(entries []sumsEntry, n int) string {
	var names []string
	seen := map[string]bool{}
	for _, e := range entries {
		if e.name == "" || seen[e.name] {
			continue
		}
		seen[e.name] = true
		names = append(names, fmt.Sprintf("%q", e.name))
	}
	switch {
	case len(names) == 0:
		return "only sums without file names"
	case len(names) > n:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
	}
	return strings.Join(names, ", ")
}
