package ipxe

import (
	"errors"
	"net/url"

	"github.com/rackboot/rackboot/internal/inventory"
)

// maxKeyLen bounds the boot key a script URL may carry (trust issues 24 characters).
const maxKeyLen = 64

// ParseScriptRequest reads a script request: the MAC from the path segment of
// /ipxe/MAC/boot.ipxe (seg) or from ?mac=, and the boot key from ?key= (empty when
// none). Anything malformed is an error naming what to fix; it never panics.
func ParseScriptRequest(rawQuery, seg string) (mac, key string, err error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", "", errors.New("malformed query string: use ?mac=MAC[&key=KEY]")
	}
	raw := q.Get("mac")
	if seg != "" {
		raw = seg
	}
	if len(raw) > 64 {
		return "", "", errors.New("the MAC is too long: write six hex bytes, e.g. 52:54:00:12:34:56")
	}
	if mac, err = inventory.NormalizeMAC(raw); err != nil {
		return "", "", err
	}
	if len(q["key"]) > 1 {
		return "", "", errors.New("more than one key: give the script URL as DHCP handed it out")
	}
	key = q.Get("key")
	if len(key) > maxKeyLen {
		return "", "", errors.New("the key is too long: give the script URL as DHCP handed it out")
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", "", errors.New("the key holds characters a boot key never has: give the script URL as DHCP handed it out")
		}
	}
	return mac, key, nil
}
