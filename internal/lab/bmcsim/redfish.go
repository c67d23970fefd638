package bmcsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Redfish service layout. Everything lives under /redfish/v1; the single manager is the
// lab BMC itself and each system has a chassis of the same Id.
const (
	rfRoot         = "/redfish/v1"
	rfSystems      = rfRoot + "/Systems"
	rfChassis      = rfRoot + "/Chassis"
	rfManagers     = rfRoot + "/Managers"
	rfManagerID    = "bmc"
	rfSessionSvc   = rfRoot + "/SessionService"
	rfSessions     = rfSessionSvc + "/Sessions"
	rfResetAction  = "ComputerSystem.Reset"
	redfishVersion = "1.16.0"
	// maxBody bounds request bodies: a PATCH of Boot or a login is a few hundred bytes.
	maxBody = 64 << 10
	// maxSessions bounds open sessions; a client that never logs out cannot exhaust memory.
	maxSessions = 64
)

// resetTypes are the ResetType values the emulator accepts, in the order it advertises
// them, and what each does: ForceRestart is a hard reset, PowerCycle off then on.
var resetTypes = []rfValue[PowerOp]{
	{"On", OpOn},
	{"ForceOff", OpOff},
	{"GracefulShutdown", OpSoft},
	{"ForceRestart", OpReset},
	{"PowerCycle", OpCycle},
}

// Boot property values and their meaning in the lab.
var (
	rfTargets = []rfValue[BootTarget]{{"None", BootNone}, {"Pxe", BootPXE}, {"Hdd", BootDisk}}
	rfModes   = []rfValue[BootMode]{{"Legacy", BootLegacy}, {"UEFI", BootUEFI}}
	rfEnabled = []string{"Disabled", "Once", "Continuous"}
)

// rfValue pairs a Redfish enum value with its lab meaning.
type rfValue[T comparable] struct {
	name string
	v    T
}

func rfLookup[T comparable](vals []rfValue[T], name string) (T, bool) {
	for _, x := range vals {
		if x.name == name {
			return x.v, true
		}
	}
	var zero T
	return zero, false
}

func rfName[T comparable](vals []rfValue[T], v T) string {
	for _, x := range vals {
		if x.v == v {
			return x.name
		}
	}
	return ""
}

func rfNames[T comparable](vals []rfValue[T]) []string {
	names := make([]string, len(vals))
	for i, x := range vals {
		names[i] = x.name
	}
	return names
}

// systemIDPattern keeps system ids usable as one URL path segment.
var systemIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// RedfishConfig configures a lab Redfish service.
type RedfishConfig struct {
	// Systems maps each ComputerSystem Id to the machine it controls (a *VMDir in the
	// lab; see SystemsFromDirs).
	Systems map[string]Machine
	// Username and Password are the one account; both HTTP basic auth and sessions
	// (POST /redfish/v1/SessionService/Sessions) accept them.
	Username, Password string
	// SessionTimeout ends sessions idle this long; default 30 minutes.
	SessionTimeout time.Duration
	// Addr is where Start listens (host:port, a lab address inside the namespace).
	Addr string
	// TLSCertFile and TLSKeyFile make Start serve https; without them it serves http.
	TLSCertFile, TLSKeyFile string
	Logger                  *slog.Logger
}

// RedfishServer is a Redfish service (DSP0266) for lab machines: service root, Systems
// with PowerState, Boot override and the Reset action, SessionService, a Manager and
// Chassis, Base-registry error bodies. It is an http.Handler; Start serves it.
type RedfishServer struct {
	cfg     RedfishConfig
	log     *slog.Logger
	ids     []string // sorted system ids
	mu      sync.Mutex
	session map[string]*session // by session id
	nextID  int
}

// NewRedfishServer checks cfg and returns the handler.
func NewRedfishServer(cfg RedfishConfig) (*RedfishServer, error) {
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("redfish: Username and Password are required")
	}
	if len(cfg.Systems) == 0 {
		return nil, errors.New("redfish: at least one system is required")
	}
	ids := make([]string, 0, len(cfg.Systems))
	for id, m := range cfg.Systems {
		if !systemIDPattern.MatchString(id) {
			return nil, fmt.Errorf("redfish: system id %q: use letters, digits, '.', '_' and '-'", id)
		}
		if m == nil {
			return nil, fmt.Errorf("redfish: system %q has no machine", id)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 30 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedfishServer{cfg: cfg, log: log, ids: ids, session: map[string]*session{}}, nil
}

// SystemsFromDirs opens VM directories as Redfish systems: id → directory.
func SystemsFromDirs(dirs map[string]string) (map[string]Machine, error) {
	systems := make(map[string]Machine, len(dirs))
	for id, dir := range dirs {
		d, err := OpenVMDir(dir)
		if err != nil {
			return nil, fmt.Errorf("redfish system %s: %w", id, err)
		}
		systems[id] = d
	}
	return systems, nil
}

// Start serves on cfg.Addr until ctx ends, then shuts down gracefully.
func (s *RedfishServer) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("redfish: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l (closed on return) until ctx ends.
func (s *RedfishServer) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
			errc <- srv.ServeTLS(l, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(l)
		}
	}()
	s.log.Info("redfish: serving", "addr", l.Addr().String(), "tls", s.cfg.TLSCertFile != "", "systems", s.ids)
	select {
	case err := <-errc:
		return fmt.Errorf("redfish: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("redfish: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("redfish: %w", err)
	}
	return nil
}

// request is one request being served and, once authenticated, who made it.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	user string
}

// ServeHTTP routes a request. Order: query options, public resources, authentication,
// then the resource and its method, so an unauthenticated client learns nothing about
// which resources exist.
func (s *RedfishServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("OData-Version", "4.0")
	req := &request{w: w, r: r}
	if err := s.serve(req); err != nil {
		var rf *redfishError
		if !errors.As(err, &rf) {
			s.log.Error("redfish: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			rf = &redfishError{status: http.StatusInternalServerError, msg: msgInternalError, detail: err.Error()}
		}
		if rf.status == http.StatusUnauthorized && !isSessionLogin(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="rackboot lab BMC"`)
		}
		if rf.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", strings.Join(allowed(cleanPath(r.URL.Path)), ", "))
		}
		writeError(w, rf)
	}
}

func isSessionLogin(r *http.Request) bool {
	return r.Method == http.MethodPost && cleanPath(r.URL.Path) == rfSessions
}

// cleanPath drops one trailing slash, so /redfish/v1/ and /redfish/v1 are the same
// resource, as DSP0266 requires.
func cleanPath(p string) string {
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// allowed returns the methods a path supports (for 405 and the Allow header).
func allowed(p string) []string {
	switch {
	case p == rfSessions:
		return []string{"GET", "HEAD", "POST"}
	case strings.HasPrefix(p, rfSessions+"/"):
		return []string{"GET", "HEAD", "DELETE"}
	case strings.HasPrefix(p, rfSystems+"/") && strings.Contains(p, "/Actions/"):
		return []string{"POST"}
	case strings.HasPrefix(p, rfSystems+"/"):
		return []string{"GET", "HEAD", "PATCH"}
	}
	return []string{"GET", "HEAD"}
}

func (s *RedfishServer) serve(req *request) error {
	r := req.r
	for k := range r.URL.Query() {
		if strings.HasPrefix(k, "$") || strings.HasPrefix(k, "only") || strings.HasPrefix(k, "excerpt") {
			// DSP0266: unsupported query parameters that start with $ (and only, excerpt)
			// get 501, so a client never mistakes a full response for a filtered one.
			return rfErr(http.StatusNotImplemented, msgQueryNotSupported)
		}
	}
	p := cleanPath(r.URL.Path)
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	// Public: the version document, service root and OData documents (DSP0266 requires
	// them without authentication), and the login itself.
	switch p {
	case "/redfish":
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.json(http.StatusOK, map[string]any{"v1": rfRoot + "/"})
	case rfRoot:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(s.serviceRoot())
	case rfRoot + "/odata":
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.json(http.StatusOK, odataServiceDocument())
	case rfRoot + "/$metadata":
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		req.w.Header().Set("Content-Type", "application/xml")
		_, err := io.WriteString(req.w, metadataXML)
		return err
	}
	if isSessionLogin(r) {
		return s.login(req)
	}
	user, err := s.authenticate(r)
	if err != nil {
		return err
	}
	req.user = user

	switch {
	case p == rfSystems:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(collection("#ComputerSystemCollection.ComputerSystemCollection", rfSystems, "Computer System Collection", s.ids))
	case strings.HasPrefix(p, rfSystems+"/"):
		return s.serveSystem(req, strings.Split(strings.TrimPrefix(p, rfSystems+"/"), "/"))
	case p == rfChassis:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(collection("#ChassisCollection.ChassisCollection", rfChassis, "Chassis Collection", s.ids))
	case strings.HasPrefix(p, rfChassis+"/"):
		id := strings.TrimPrefix(p, rfChassis+"/")
		m, ok := s.cfg.Systems[id]
		if !ok {
			return rfErr(http.StatusNotFound, msgResourceNotFound, "Chassis", id)
		}
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		st, err := m.PowerState(r.Context())
		if err != nil {
			return err
		}
		return req.resource(chassisResource(id, st))
	case p == rfManagers:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(collection("#ManagerCollection.ManagerCollection", rfManagers, "Manager Collection", []string{rfManagerID}))
	case p == rfManagers+"/"+rfManagerID:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(s.managerResource())
	case p == rfSessionSvc:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(s.sessionService())
	case p == rfSessions:
		if !get {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		return req.resource(collection("#SessionCollection.SessionCollection", rfSessions, "Session Collection", s.sessionIDs()))
	case strings.HasPrefix(p, rfSessions+"/"):
		return s.serveSession(req, strings.TrimPrefix(p, rfSessions+"/"))
	}
	return rfErr(http.StatusNotFound, msgInvalidURI, p)
}

// serveSystem handles /Systems/{id}[/Actions/{action}].
func (s *RedfishServer) serveSystem(req *request, seg []string) error {
	id := seg[0]
	m, ok := s.cfg.Systems[id]
	if !ok {
		return rfErr(http.StatusNotFound, msgResourceNotFound, "ComputerSystem", id)
	}
	r := req.r
	switch {
	case len(seg) == 1:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			res, err := s.systemResource(r.Context(), id, m)
			if err != nil {
				return err
			}
			return req.resource(res)
		case http.MethodPatch:
			return s.patchSystem(req, id, m)
		}
		return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
	case len(seg) == 3 && seg[1] == "Actions":
		if r.Method != http.MethodPost {
			return rfErr(http.StatusMethodNotAllowed, msgOperationNotAllowed)
		}
		if seg[2] != rfResetAction {
			return rfErr(http.StatusBadRequest, msgActionNotSupported, "#"+seg[2])
		}
		return s.reset(req, id, m)
	}
	return rfErr(http.StatusNotFound, msgInvalidURI, r.URL.Path)
}

func (s *RedfishServer) systemResource(ctx context.Context, id string, m Machine) (map[string]any, error) {
	st, err := m.PowerState(ctx)
	if err != nil {
		return nil, err
	}
	o, err := m.BootOverride(ctx)
	if err != nil {
		return nil, err
	}
	uri := rfSystems + "/" + id
	return map[string]any{
		"@odata.type":  "#ComputerSystem.v1_20_0.ComputerSystem",
		"@odata.id":    uri,
		"Id":           id,
		"Name":         id,
		"SystemType":   "Virtual",
		"Manufacturer": "QEMU",
		"Model":        "rackboot lab VM",
		"PowerState":   rfPowerState(st),
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"Boot":         bootJSON(o),
		"Actions": map[string]any{
			"#" + rfResetAction: map[string]any{
				"target":                            uri + "/Actions/" + rfResetAction,
				"ResetType@Redfish.AllowableValues": rfNames(resetTypes),
			},
		},
		"Links": map[string]any{
			"Chassis":   []any{link(rfChassis + "/" + id)},
			"ManagedBy": []any{link(rfManagers + "/" + rfManagerID)},
		},
	}, nil
}

func rfPowerState(st PowerState) string {
	if st == PowerOn {
		return "On"
	}
	return "Off"
}

// bootJSON renders a BootOverride. No override reads as Disabled/None; the stored
// persistence shows again once a target is set.
func bootJSON(o BootOverride) map[string]any {
	enabled, target := "Disabled", "None"
	if o.Target != BootNone {
		enabled = "Once"
		if o.Persistence == BootPersistent {
			enabled = "Continuous"
		}
		target = rfName(rfTargets, o.Target)
	}
	return map[string]any{
		"BootSourceOverrideEnabled":                         enabled,
		"BootSourceOverrideEnabled@Redfish.AllowableValues": rfEnabled,
		"BootSourceOverrideTarget":                          target,
		"BootSourceOverrideTarget@Redfish.AllowableValues":  rfNames(rfTargets),
		"BootSourceOverrideMode":                            rfName(rfModes, o.Mode),
		"BootSourceOverrideMode@Redfish.AllowableValues":    rfNames(rfModes),
	}
}

// systemProperties are the ComputerSystem properties this service shows; a PATCH of any
// of them but Boot is PropertyNotWritable, anything else PropertyUnknown.
var systemProperties = []string{"Id", "Name", "SystemType", "Manufacturer", "Model", "PowerState", "Status", "Actions", "Links", "Description"}

// patchSystem applies a PATCH to a ComputerSystem: only Boot's three override properties
// are writable. The whole request is checked before anything changes.
func (s *RedfishServer) patchSystem(req *request, id string, m Machine) error {
	ctx := req.r.Context()
	if err := s.checkIfMatch(req, id, m); err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := req.decode(&body); err != nil {
		return err
	}
	if len(body) == 0 {
		return rfErr(http.StatusBadRequest, msgEmptyJSON)
	}
	cur, err := m.BootOverride(ctx)
	if err != nil {
		return err
	}
	next := cur
	var bootRaw json.RawMessage
	for _, k := range sortedKeys(body) {
		switch {
		case k == "Boot":
			bootRaw = body[k]
		case strings.Contains(k, "@"):
			// Annotations (such as @odata.etag) carry no value to apply.
		case slices.Contains(systemProperties, k):
			return rfErr(http.StatusBadRequest, msgPropertyNotWritable, k)
		default:
			return rfErr(http.StatusBadRequest, msgPropertyUnknown, k)
		}
	}
	if bootRaw == nil {
		return rfErr(http.StatusBadRequest, msgEmptyJSON)
	}
	var boot map[string]json.RawMessage
	if err := json.Unmarshal(bootRaw, &boot); err != nil || boot == nil {
		return rfErr(http.StatusBadRequest, msgPropertyValueType, string(bootRaw), "Boot")
	}
	var enabled string
	for _, k := range sortedKeys(boot) {
		if strings.Contains(k, "@") {
			continue
		}
		switch k {
		case "BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode":
		default:
			return rfErr(http.StatusBadRequest, msgPropertyUnknown, "Boot/"+k)
		}
		var v string
		if err := json.Unmarshal(boot[k], &v); err != nil {
			return rfErr(http.StatusBadRequest, msgPropertyValueType, string(boot[k]), "Boot/"+k)
		}
		switch k {
		case "BootSourceOverrideTarget":
			t, ok := rfLookup(rfTargets, v)
			if !ok {
				return rfErr(http.StatusBadRequest, msgPropertyValueNotInLst, v, "Boot/BootSourceOverrideTarget")
			}
			next.Target = t
		case "BootSourceOverrideEnabled":
			if !slices.Contains(rfEnabled, v) {
				return rfErr(http.StatusBadRequest, msgPropertyValueNotInLst, v, "Boot/BootSourceOverrideEnabled")
			}
			enabled = v
		case "BootSourceOverrideMode":
			mode, ok := rfLookup(rfModes, v)
			if !ok {
				return rfErr(http.StatusBadRequest, msgPropertyValueNotInLst, v, "Boot/BootSourceOverrideMode")
			}
			next.Mode = mode
		}
	}
	// Enabled Disabled clears the override whatever the target says; Once or Continuous
	// set how long a target lasts. A target set with no Enabled while none was set is
	// Once, as on common BMCs. Enabling with no target is kept but reads as Disabled
	// until a target is set, as there is nothing to boot from.
	if enabled == "" && cur.Target == BootNone && next.Target != BootNone {
		enabled = "Once"
	}
	switch enabled {
	case "Disabled":
		next.Target = BootNone
	case "Once":
		next.Persistence = BootOnce
	case "Continuous":
		next.Persistence = BootPersistent
	}
	if err := m.SetBootOverride(ctx, next); err != nil {
		return err
	}
	s.log.Info("redfish: boot override set", "system", id, "target", next.Target, "persistence", next.Persistence, "mode", next.Mode, "user", req.user)
	res, err := s.systemResource(ctx, id, m)
	if err != nil {
		return err
	}
	return req.resource(res)
}

// checkIfMatch enforces an If-Match header on a PATCH (gofish and sushy send the ETag
// they last read). Without the header the PATCH applies unconditionally.
func (s *RedfishServer) checkIfMatch(req *request, id string, m Machine) error {
	want := req.r.Header.Get("If-Match")
	if want == "" || want == "*" {
		return nil
	}
	res, err := s.systemResource(req.r.Context(), id, m)
	if err != nil {
		return err
	}
	tag, err := etag(res)
	if err != nil {
		return err
	}
	for _, t := range strings.Split(want, ",") {
		if strings.TrimSpace(t) == tag {
			return nil
		}
	}
	return rfErr(http.StatusPreconditionFailed, msgPreconditionFailed)
}

// reset runs #ComputerSystem.Reset.
func (s *RedfishServer) reset(req *request, id string, m Machine) error {
	var body map[string]json.RawMessage
	if err := req.decode(&body); err != nil {
		return err
	}
	action := "#" + rfResetAction
	raw, ok := body["ResetType"]
	if !ok {
		return rfErr(http.StatusBadRequest, msgActionParamMissing, action, "ResetType")
	}
	for k := range body {
		if k != "ResetType" && !strings.Contains(k, "@") {
			return rfErr(http.StatusBadRequest, msgActionParamUnknown, action, k)
		}
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return rfErr(http.StatusBadRequest, msgActionParamType, string(raw), "ResetType", action)
	}
	op, ok := rfLookup(resetTypes, name)
	if !ok {
		return rfErr(http.StatusBadRequest, msgActionParamNotInList, name, "ResetType", action)
	}
	start := time.Now()
	if err := m.Power(req.r.Context(), op); err != nil {
		return &redfishError{status: http.StatusInternalServerError, msg: msgInternalError,
			detail: fmt.Sprintf("%s %s on system %s failed: %v", action, name, id, err)}
	}
	s.log.Info("redfish: reset", "system", id, "resetType", name, "op", string(op), "user", req.user, "took", time.Since(start))
	req.w.WriteHeader(http.StatusNoContent)
	return nil
}

// decode reads a JSON object body, bounded in size.
func (req *request) decode(v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(req.w, req.r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return rfErr(http.StatusRequestEntityTooLarge, msgPayloadTooLarge)
	}
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return rfErr(http.StatusBadRequest, msgMalformedJSON)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return rfErr(http.StatusBadRequest, msgMalformedJSON)
	}
	return nil
}

// resource writes a resource with its ETag.
func (req *request) resource(res map[string]any) error {
	tag, err := etag(res)
	if err != nil {
		return err
	}
	req.w.Header().Set("ETag", tag)
	req.w.Header().Set("Allow", strings.Join(allowed(cleanPath(req.r.URL.Path)), ", "))
	return req.json(http.StatusOK, res)
}

func (req *request) json(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	req.w.Header().Set("Cache-Control", "no-store")
	req.w.WriteHeader(status)
	_, err = req.w.Write(append(b, '\n'))
	return err
}

// etag is a strong validator over the resource's JSON (maps marshal with sorted keys).
func etag(res map[string]any) (string, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:8]) + `"`, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
