package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

const bmcURLHelp = "ipmi://USER@HOST[:PORT][?cipher=N], redfish://USER@HOST[:PORT][?insecure=1&auth=basic&system=NAME] or redfish+http://USER@HOST:PORT"

// maxPasswordFile bounds --bmc-password-file: BMC passwords are at most a few dozen bytes.
const maxPasswordFile = 4096

// bmcFlags are the BMC options shared by `host add` and `host bmc`.
type bmcFlags struct {
	url, passwordFile, password string
}

func (b *bmcFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.url, "bmc", "", "BMC URL: "+bmcURLHelp)
	f.StringVar(&b.passwordFile, "bmc-password-file", "", `file holding the BMC password ("-": standard input)`)
	// Only to say why it does not exist: a password on the command line is visible in
	// ps and kept in shell history.
	f.StringVar(&b.password, "bmc-password", "", "")
	_ = f.MarkHidden("bmc-password")
}

// spec validates the flags and returns the BMC to send; nil when none was given (and
// none is required).
func (b *bmcFlags) spec(stdin io.Reader, required bool) (*inventory.BMC, error) {
	if b.password != "" {
		return nil, errors.New("--bmc-password: a password on the command line shows in ps and shell history: put it in a file (mode 0600) and give --bmc-password-file FILE, or --bmc-password-file - to read standard input")
	}
	if b.url == "" {
		if b.passwordFile != "" {
			return nil, errors.New("--bmc-password-file needs --bmc URL")
		}
		if required {
			return nil, errors.New("give --bmc URL (" + bmcURLHelp + ")")
		}
		return nil, nil
	}
	if _, err := bmc.ParseURL(b.url); err != nil {
		return nil, fmt.Errorf("--bmc: %w", err)
	}
	out := &inventory.BMC{URL: b.url}
	if b.passwordFile != "" {
		pw, err := readPasswordFile(b.passwordFile, stdin)
		if err != nil {
			return nil, err
		}
		out.Password = pw
	}
	return out, nil
}

// readPasswordFile reads a password: the whole file, less one trailing newline, so
// `echo pw > file` works and a password may still contain spaces.
func readPasswordFile(name string, stdin io.Reader) (string, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, maxPasswordFile+1))
	} else {
		var f *os.File
		if f, err = os.Open(name); err == nil {
			data, err = io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
			f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("--bmc-password-file: %w", err)
	}
	if len(data) > maxPasswordFile {
		return "", fmt.Errorf("--bmc-password-file %s: more than %d bytes: give a file holding only the password", name, maxPasswordFile)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("--bmc-password-file %s is empty: put the BMC password in it", name)
	}
	if strings.ContainsAny(pw, "\n\r\x00") {
		return "", fmt.Errorf("--bmc-password-file %s holds more than one line: give a file holding only the password", name)
	}
	return pw, nil
}

// bmcClient is the API client with room for a BMC operation: the server bounds each
// one by its BMC timeout (30 s by default) plus the wait for a free worker.
func bmcClient(c *admin.Client) *admin.Client { return c.WithTimeout(3 * time.Minute) }

func (h *hostCLI) bmcCmd() *cobra.Command {
	var (
		flags bmcFlags
		clear bool
	)
	cmd := &cobra.Command{
		Use:   "bmc ID --bmc URL [--bmc-password-file FILE] | --clear",
		Short: "Set, change or remove a host's BMC",
		Long: `bmc sets the host's BMC URL (` + bmcURLHelp + `)
and, with --bmc-password-file ("-": standard input), its password. Without a password file
the stored password is kept, so a URL can be corrected alone. --clear removes the BMC and
its password. The password is stored encrypted and never shown.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			id := args[0]
			if clear {
				if flags.url != "" || flags.passwordFile != "" {
					return errors.New("--clear removes the BMC: give it alone, without --bmc or --bmc-password-file")
				}
				if _, err := c.ClearBMC(ctx, id); err != nil {
					return err
				}
				_, err := fmt.Fprintf(h.env.stdout, "host %s: BMC removed\n", id)
				return err
			}
			b, err := flags.spec(h.stdin, true)
			if err != nil {
				return err
			}
			host, err := c.SetBMC(ctx, id, admin.BMCRequest{URL: b.URL, Password: b.Password})
			if err != nil {
				return err
			}
			note := "no password stored"
			switch {
			case b.Password != "":
				note = "password set"
			case host.BMC != nil && host.BMC.PasswordSet:
				note = "password kept"
			}
			_, err = fmt.Fprintf(h.env.stdout, "host %s: BMC %s (%s)\n", host.ID, b.URL, note)
			return err
		}),
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the BMC and its password")
	return cmd
}
