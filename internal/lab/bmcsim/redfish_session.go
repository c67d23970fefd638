package bmcsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// session is one Redfish login; its token authenticates requests until it is
// deleted or idle for longer than the session timeout.
type session struct {
	id, token, user string
	created         time.Time
	lastUsed        time.Time
}

// login creates a session: 201 with X-Auth-Token and Location (DSP0266 §13.3.4).
func (s *RedfishServer) login(req *request) error {
	var body map[string]json.RawMessage
	if err := req.decode(&body); err != nil {
		return err
	}
	var creds [2]string
	for i, k := range []string{"UserName", "Password"} {
		raw, ok := body[k]
		if !ok {
			return rfErr(http.StatusBadRequest, msgPropertyMissing, k)
		}
		if err := json.Unmarshal(raw, &creds[i]); err != nil {
			v := string(raw)
			if k == "Password" {
				v = "(redacted)"
			}
			return rfErr(http.StatusBadRequest, msgPropertyValueType, v, k)
		}
	}
	for k := range body {
		if k != "UserName" && k != "Password" && !strings.Contains(k, "@") {
			return rfErr(http.StatusBadRequest, msgPropertyUnknown, k)
		}
	}
	if !s.credentialsOK(creds[0], creds[1]) {
		s.log.Warn("redfish: login refused", "user", creds[0], "remote", req.r.RemoteAddr)
		return rfErr(http.StatusUnauthorized, msgAccessDenied, rfSessions)
	}
	sess, err := s.newSession(creds[0])
	if err != nil {
		return err
	}
	uri := rfSessions + "/" + sess.id
	req.w.Header().Set("X-Auth-Token", sess.token)
	req.w.Header().Set("Location", uri)
	s.log.Info("redfish: session created", "session", sess.id, "user", sess.user, "remote", req.r.RemoteAddr)
	return req.json(http.StatusCreated, sessionResource(sess))
}

func (s *RedfishServer) credentialsOK(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password))
	return u&p == 1
}

func (s *RedfishServer) newSession(user string) (*session, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if len(s.session) >= maxSessions {
		return nil, rfErr(http.StatusServiceUnavailable, msgSessionLimitExceeded)
	}
	s.nextID++
	sess := &session{id: fmt.Sprint(s.nextID), token: hex.EncodeToString(b[:]), user: user, created: now, lastUsed: now}
	s.session[sess.id] = sess
	return sess, nil
}

func (s *RedfishServer) expireLocked(now time.Time) {
	for id, sess := range s.session {
		if now.Sub(sess.lastUsed) > s.cfg.SessionTimeout {
			delete(s.session, id)
		}
	}
}

// authenticate accepts a valid X-Auth-Token or HTTP basic credentials; a token that is
// present but unknown is refused even if basic credentials are also sent.
func (s *RedfishServer) authenticate(r *http.Request) (string, error) {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		now := time.Now()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireLocked(now)
		for _, sess := range s.session {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(sess.token)) == 1 {
				sess.lastUsed = now
				return sess.user, nil
			}
		}
		return "", rfErr(http.StatusUnauthorized, msgNoValidSession)
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if s.credentialsOK(user, pass) {
			return user, nil
		}
		s.log.Warn("redfish: basic auth refused", "user", user, "remote", r.RemoteAddr)
	}
	return "", rfErr(http.StatusUnauthorized, msgNoValidSession)
}

func (s *RedfishServer) sessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	ids := make([]string, 0, len(s.session))
	for id := range s.session {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if len(ids[i]) != len(ids[j]) {
			return len(ids[i]) < len(ids[j])
		}
		return ids[i] < ids[j]
	})
	return ids
}

// serveSession handles GET and DELETE (logout) of one session.
func (s *RedfishServer) serveSession(req *request, id string) error {
	s.mu.Lock()
	sess, ok := s.session[id]
	if ok && req.r.Method == http.MethodDelete {
		delete(s.session, id)
	}
	s.mu.Unlock()
	if !ok {
		return rfErr(http.StatusNotFound, msgResourceNotFound, "Session", id)
	}
	switch req.r.Method {
	case http.MethodGet, http.MethodHead:
		return req.resource(sessionResource(sess))
	case http.MethodDelete:
		s.log.Info("redfish: session deleted", "session", id, "user", req.user)
		req.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
}
