package adminserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/rackboot/rackboot/admin"
)

// decodeBody reads at most limit bytes of JSON into v, strictly: unknown fields, trailing
// data and oversized bodies are errors that say where the problem is.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body is larger than %d bytes: send less (split a large import into several)", mbe.Limit)}
		}
		return badRequest("reading request body: %v", err)
	}
	if err := admin.DecodeStrict(data, v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}
