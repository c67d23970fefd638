package bmcsim_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// fakeMachine is an in-memory Machine for the Redfish tests: it records power
// operations and applies them to its state without any QEMU.
type fakeMachine struct {
	mu    sync.Mutex
	state bmcsim.PowerState
	boot  bmcsim.BootOverride
	ops   []bmcsim.PowerOp
	fail  error
}

func newFakeMachine() *fakeMachine {
	return &fakeMachine{
		state: bmcsim.PowerOff,
		boot:  bmcsim.BootOverride{Target: bmcsim.BootNone, Persistence: bmcsim.BootOnce, Mode: bmcsim.BootUEFI},
	}
}

func (m *fakeMachine) PowerState(context.Context) (bmcsim.PowerState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, nil
}

func (m *fakeMachine) Power(_ context.Context, op bmcsim.PowerOp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.ops = append(m.ops, op)
	switch op {
	case bmcsim.OpOn, bmcsim.OpReset, bmcsim.OpCycle:
		m.state = bmcsim.PowerOn
		if m.boot.Persistence == bmcsim.BootOnce {
			m.boot.Target = bmcsim.BootNone
		}
	case bmcsim.OpOff, bmcsim.OpSoft:
		m.state = bmcsim.PowerOff
	default:
		return errors.New("unknown op")
	}
	return nil
}

func (m *fakeMachine) BootOverride(context.Context) (bmcsim.BootOverride, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot, nil
}

func (m *fakeMachine) SetBootOverride(_ context.Context, o bmcsim.BootOverride) error {
	if err := o.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.boot = o
	return nil
}

func (m *fakeMachine) snapshot() (bmcsim.PowerState, bmcsim.BootOverride, []bmcsim.PowerOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, m.boot, append([]bmcsim.PowerOp(nil), m.ops...)
}

const (
	rfUser = "admin"
	rfPass = "correct horse"
)

// newRedfish serves a Redfish emulator with the given systems on 127.0.0.1:0.
func newRedfish(t *testing.T, systems map[string]*fakeMachine) (*bmcsim.RedfishServer, *httptest.Server) {
	t.Helper()
	ms := map[string]bmcsim.Machine{}
	for id, m := range systems {
		ms[id] = m
	}
	srv, err := bmcsim.NewRedfishServer(bmcsim.RedfishConfig{Systems: ms, Username: rfUser, Password: rfPass})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}
