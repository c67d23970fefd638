package bmcsim_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// helperArg as os.Args[1] makes the test binary act as one of the programs the lab runs,
// so the tests drive exactly the code the rackboot subcommands will call:
//
//	bmcsim.test bmcsim-helper chassis-control --dir D get|set ...   (rackboot-bmcsim chassis-control)
//	bmcsim.test bmcsim-helper vm-power --dir D OP                   (rackboot-bmcsim vm-power)
//	bmcsim.test bmcsim-helper redfish --listen A --user U --password P --system ID=DIR...
//	bmcsim.test bmcsim-helper fake-qemu QEMU-ARGS...                (a stand-in for QEMU)
const helperArg = "bmcsim-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(runHelper(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

func runHelper(name string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch name {
	case "chassis-control", "vm-power":
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		dir := fs.String("dir", "", "VM directory")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if name == "chassis-control" {
			err = bmcsim.ChassisControl(ctx, *dir, fs.Args(), os.Stdout)
		} else if fs.NArg() != 1 {
			err = fmt.Errorf("vm-power: one operation expected, got %q", fs.Args())
		} else {
			err = bmcsim.PowerCommand(ctx, *dir, fs.Arg(0), os.Stdout)
		}
	case "redfish":
		err = redfishHelper(ctx, args)
	case "fake-qemu":
		err = fakeQEMU(args)
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// systemsFlag collects --system ID=DIR.
type systemsFlag map[string]string

func (s systemsFlag) String() string { return fmt.Sprint(map[string]string(s)) }
func (s systemsFlag) Set(v string) error {
	id, dir, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("--system %q: want ID=DIR", v)
	}
	s[id] = dir
	return nil
}

// redfishHelper is what `rackboot-bmcsim redfish` does.
func redfishHelper(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("redfish", flag.ContinueOnError)
	listen := fs.String("listen", "", "address")
	user := fs.String("user", "", "username")
	pass := fs.String("password", "", "password")
	systems := systemsFlag{}
	fs.Var(systems, "system", "ID=DIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	machines, err := bmcsim.SystemsFromDirs(systems)
	if err != nil {
		return err
	}
	srv, err := bmcsim.NewRedfishServer(bmcsim.RedfishConfig{
		Systems: machines, Username: *user, Password: *pass, Addr: *listen,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	return srv.Start(ctx)
}

// fakeQEMU stands in for qemu-system-x86_64 in tests of the power path: it serves QMP on
// the listening socket bmcsim passes (-chardev socket,...,fd=N), writes its arguments to
// the serial file (-serial file:PATH) and acts on quit, system_reset and
// system_powerdown the way QEMU does, and answers set_link (QEMU's form: name and up,
// an empty return). Extra flags change its behaviour:
//
//	-fake-fail         exit 1 before serving QMP, as QEMU does on a bad argument
//	-fake-ignore-quit  answer quit but keep running (a wedged QEMU: SIGKILL needed)
//	-fake-ignore-acpi  answer system_powerdown and keep running (a guest ignoring it)
func fakeQEMU(args []string) error {
	var serial *os.File
	var l net.Listener
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-serial":
			path, ok := strings.CutPrefix(args[i+1], "file:")
			if !ok {
				continue
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			serial = f
		case "-chardev":
			for _, opt := range strings.Split(args[i+1], ",") {
				if fd, ok := strings.CutPrefix(opt, "fd="); ok {
					var n int
					if _, err := fmt.Sscan(fd, &n); err != nil {
						return err
					}
					fl, err := net.FileListener(os.NewFile(uintptr(n), "qmp"))
					if err != nil {
						return fmt.Errorf("fake-qemu: fd %d is not a listener: %w", n, err)
					}
					l = fl
				}
			}
		}
	}
	if serial == nil || l == nil {
		return fmt.Errorf("fake-qemu: need -serial file:PATH and a QMP chardev with fd=, got %q", args)
	}
	fmt.Fprintf(serial, "fake-qemu pid %d argv: %s\n", os.Getpid(), strings.Join(args, " "))
	if slices.Contains(args, "-fake-fail") {
		return fmt.Errorf("fake-qemu: failing as asked")
	}
	noReboot := slices.Contains(args, "-no-reboot")
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		exit := serveFakeQMP(conn, serial, noReboot, slices.Contains(args, "-fake-ignore-quit"), slices.Contains(args, "-fake-ignore-acpi"))
		conn.Close()
		if exit {
			return nil
		}
	}
}

// serveFakeQMP serves one QMP client; it reports whether QEMU should now exit.
func serveFakeQMP(conn net.Conn, serial *os.File, noReboot, ignoreQuit, ignoreACPI bool) bool {
	enc, dec := json.NewEncoder(conn), json.NewDecoder(conn)
	_ = enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{"package": "fake"}, "capabilities": []string{}}})
	ok := map[string]any{"return": map[string]any{}}
	for {
		var cmd struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := dec.Decode(&cmd); err != nil {
			return false
		}
		if cmd.Arguments != nil {
			fmt.Fprintf(serial, "qmp %s %s\n", cmd.Execute, cmd.Arguments)
		} else {
			fmt.Fprintf(serial, "qmp %s\n", cmd.Execute)
		}
		switch cmd.Execute {
		case "qmp_capabilities":
			_ = enc.Encode(ok)
		case "quit":
			_ = enc.Encode(ok)
			if !ignoreQuit {
				return true
			}
		case "system_reset":
			if noReboot {
				_ = enc.Encode(map[string]any{"event": "SHUTDOWN"})
				_ = enc.Encode(ok)
				return true
			}
			_ = enc.Encode(map[string]any{"event": "RESET"})
			_ = enc.Encode(ok)
		case "system_powerdown":
			_ = enc.Encode(ok)
			if !ignoreACPI {
				return true
			}
		case "set_link":
			var a struct {
				Name string `json:"name"`
				Up   *bool  `json:"up"`
			}
			if json.Unmarshal(cmd.Arguments, &a) != nil || a.Name == "" || a.Up == nil {
				_ = enc.Encode(map[string]any{"error": map[string]any{"class": "GenericError", "desc": "Parameter 'name' is missing"}})
				continue
			}
			if a.Name != "nic0" && a.Name != "nic1" {
				_ = enc.Encode(map[string]any{"error": map[string]any{"class": "DeviceNotFound", "desc": "Device '" + a.Name + "' not found"}})
				continue
			}
			_ = enc.Encode(ok)
		default:
			_ = enc.Encode(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "The command " + cmd.Execute + " has not been found"}})
		}
	}
}
