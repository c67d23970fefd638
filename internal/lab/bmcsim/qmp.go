package bmcsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// qmpTimeout bounds one QMP exchange: QEMU answers in milliseconds unless it is wedged,
// and chassis_control must answer ipmi_sim well under a second.
const qmpTimeout = 2 * time.Second

// qmpMessage is any message QEMU sends on a QMP socket: the greeting, a command's return
// or error, or an asynchronous event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// qmpSession is one connection to a QEMU monitor in command mode.
type qmpSession struct {
	conn net.Conn
	dec  *json.Decoder
}

// dialQMP connects to the socket, reads the greeting and leaves capabilities
// negotiation, so commands can follow. Its deadline is ctx's or qmpTimeout, whichever is
// sooner; the greeting only comes once QEMU's main loop runs, so a successful dial also
// means the machine was created.
func dialQMP(ctx context.Context, path string) (*qmpSession, error) {
	deadline := time.Now().Add(qmpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn, err := (&net.Dialer{Deadline: deadline}).DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect QMP %s: %w", path, err)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, err
	}
	s := &qmpSession{conn: conn, dec: json.NewDecoder(conn)}
	var greeting qmpMessage
	if err := s.dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting on %s: %w", path, err)
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP %s: first message is not a greeting", path)
	}
	if err := s.execute("qmp_capabilities"); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// execute sends a command without arguments and waits for its return, skipping events.
func (s *qmpSession) execute(command string) error {
	_, err := s.executeArgs(command, nil)
	return err
}

// executeArgs sends a command with arguments (nil: none; else anything encoding/json
// turns into an object) and returns its "return" value, skipping events.
func (s *qmpSession) executeArgs(command string, args any) (json.RawMessage, error) {
	msg := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args}
	if err := json.NewEncoder(s.conn).Encode(msg); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	for {
		var m qmpMessage
		if err := s.dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("QMP %s: reply: %w", command, err)
		}
		switch {
		case m.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", command, m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return m.Return, nil
		}
		// An event (SHUTDOWN, RESET, POWERDOWN...): keep reading for the reply.
	}
}

func (s *qmpSession) close() error { return s.conn.Close() }

// qmpCommand runs one command on the QMP socket at path.
func qmpCommand(ctx context.Context, path, command string) error {
	s, err := dialQMP(ctx, path)
	if err != nil {
		return err
	}
	defer s.close()
	return s.execute(command)
}

// QMP runs one command with arguments on the running QEMU's monitor and returns its
// "return" value: for what a BMC never does but a lab test wants, such as set_link
// (a NIC's cable pulled and plugged back) or query-status. args is nil or anything
// encoding/json encodes as an object. It takes no lock: it changes no power state.
func (d *VMDir) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if _, on, err := d.running(); err != nil {
		return nil, err
	} else if !on {
		return nil, fmt.Errorf("QMP %s on VM %s: the VM is off", command, d.Spec.Name)
	}
	s, err := dialQMP(ctx, d.file(QMPSocket))
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.executeArgs(command, args)
}

// errQEMUExited reports that QEMU ended while starting; the error carries its log.
var errQEMUExited = errors.New("QEMU exited while starting")
