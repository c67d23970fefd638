package adminserver

import (
	"net/http"
)

func (h *handler) version(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, h.versionInfo)
	return nil
}
