package agentapi

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeRequest feeds arbitrary bodies to the agent API's request decoding (hello,
// progress, result) and the hello's validation: a clear error or a value, never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"mac":"52:54:00:12:34:56","agentVersion":"v1","bootID":"b","facts":{"disks":[{"name":"sda","sizeBytes":1}]}}`,
		`{"phase":"write","bytesDone":1,"bytesTotal":2}`,
		`{"action":"provision","ok":true,"imageSHA256":"00"}`,
		`{"mac":` + string(bytes.Repeat([]byte("["), 200)),
		`{"facts":{"disks":null,"nics":[{}]}}`,
		`null`, ``, `{"mac":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&Hello{}, &Progress{}, &Result{}} {
			r := httptest.NewRequest("POST", PathHello, bytes.NewReader(body))
			r.Header.Set("Content-Type", ContentType)
			if err := DecodeRequest(r, v); err != nil {
				continue
			}
			if h, ok := v.(*Hello); ok {
				_ = h.Validate()
			}
		}
	})
}
