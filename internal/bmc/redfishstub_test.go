package bmc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// redfishStub is a minimal Redfish service for unit tests of the bmclib backend over
// real HTTP: service root, session service, one or more systems with Reset and boot
// override. The lab's emulator (internal/lab/bmcsim) is the honest one; this is only enough of
// the protocol for bmclib's gofish provider.
type redfishStub struct {
	user, password string
	// systems by Id; each has a Name ("System <id>").
	mu      sync.Mutex
	systems map[string]*stubSystem
	order   []string
	tokens  map[string]bool
	// failNext makes the next n requests answer 503.
	failNext atomic.Int32
	// resets counts Reset actions by type.
	resets map[string]int
	// hang, if set, blocks every request until it is closed.
	hang chan struct{}
}

type stubSystem struct {
	ID, Name   string
	PowerState string
	Boot       map[string]string
}

func newRedfishStub(user, password string, ids ...string) *redfishStub {
	if len(ids) == 0 {
		ids = []string{"1"}
	}
	s := &redfishStub{user: user, password: password, systems: map[string]*stubSystem{}, tokens: map[string]bool{}, resets: map[string]int{}}
	for _, id := range ids {
		s.systems[id] = &stubSystem{ID: id, Name: "System " + id, PowerState: "Off",
			Boot: map[string]string{"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideMode": "UEFI"}}
		s.order = append(s.order, id)
	}
	return s
}

func (s *redfishStub) system(id string) stubSystem {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.systems[id]
	c.Boot = map[string]string{}
	for k, v := range s.systems[id].Boot {
		c.Boot[k] = v
	}
	return c
}

func (s *redfishStub) resetCount(t string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets[t]
}

func redfishError(w http.ResponseWriter, code int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": "Base.1.8." + id, "message": msg,
		"@Message.ExtendedInfo": []map[string]string{{"MessageId": "Base.1.8." + id, "Message": msg}},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (s *redfishStub) authorized(r *http.Request) bool {
	if u, p, ok := r.BasicAuth(); ok {
		return u == s.user && p == s.password
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[r.Header.Get("X-Auth-Token")]
}

func (s *redfishStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hang != nil {
		<-s.hang
		return
	}
	if s.failNext.Load() > 0 {
		s.failNext.Add(-1)
		redfishError(w, http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable", "try again later")
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/redfish/v1" && r.Method == http.MethodGet:
		writeJSON(w, map[string]any{
			"@odata.id": "/redfish/v1/", "Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.15.0",
			"Systems":        map[string]string{"@odata.id": "/redfish/v1/Systems"},
			"SessionService": map[string]string{"@odata.id": "/redfish/v1/SessionService"},
			"Links":          map[string]any{"Sessions": map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions"}},
		})
		return
	case p == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodPost:
		var body struct{ UserName, Password string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UserName != s.user || body.Password != s.password {
			redfishError(w, http.StatusUnauthorized, "NoValidSession", "invalid credentials")
			return
		}
		s.mu.Lock()
		tok := fmt.Sprintf("tok-%d", len(s.tokens)+1)
		s.tokens[tok] = true
		s.mu.Unlock()
		w.Header().Set("X-Auth-Token", tok)
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/"+tok)
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions/" + tok, "Id": tok})
		return
	}
	if !s.authorized(r) {
		redfishError(w, http.StatusUnauthorized, "NoValidSession", "authentication required")
		return
	}
	if strings.HasPrefix(p, "/redfish/v1/SessionService/Sessions/") && r.Method == http.MethodDelete {
		s.mu.Lock()
		delete(s.tokens, strings.TrimPrefix(p, "/redfish/v1/SessionService/Sessions/"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if p == "/redfish/v1/Systems" && r.Method == http.MethodGet {
		var members []map[string]string
		for _, id := range s.order {
			members = append(members, map[string]string{"@odata.id": "/redfish/v1/Systems/" + id})
		}
		writeJSON(w, map[string]any{"@odata.id": "/redfish/v1/Systems", "Name": "Systems", "Members": members, "Members@odata.count": len(members)})
		return
	}
	rest, ok := strings.CutPrefix(p, "/redfish/v1/Systems/")
	if !ok {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "no resource at "+p)
		return
	}
	id, action, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.systems[id]
	if sys == nil {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "no system "+id)
		return
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		writeJSON(w, map[string]any{
			"@odata.id": "/redfish/v1/Systems/" + id, "Id": id, "Name": sys.Name, "PowerState": sys.PowerState, "Boot": sys.Boot,
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
				"target":                            "/redfish/v1/Systems/" + id + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"},
			}},
		})
	case action == "" && r.Method == http.MethodPatch:
		var body struct{ Boot map[string]string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			redfishError(w, http.StatusBadRequest, "MalformedJSON", err.Error())
			return
		}
		for k, v := range body.Boot {
			if v != "" {
				sys.Boot[k] = v
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case action == "Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		var body struct{ ResetType string }
		json.NewDecoder(r.Body).Decode(&body)
		switch body.ResetType {
		case "On", "ForceRestart", "PowerCycle":
			sys.PowerState = "On"
		case "ForceOff", "GracefulShutdown":
			sys.PowerState = "Off"
		default:
			redfishError(w, http.StatusBadRequest, "ActionParameterValueNotInList", "bad ResetType "+body.ResetType)
			return
		}
		s.resets[body.ResetType]++
		w.WriteHeader(http.StatusNoContent)
	default:
		redfishError(w, http.StatusMethodNotAllowed, "OperationNotAllowed", r.Method+" "+p)
	}
}
