package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// completionFiles are the scripts `rackboot completion SHELL` writes, by shell, named as
// each shell's vendor directory wants them.
var completionFiles = []struct{ shell, file, installPath string }{
	{"bash", "rackboot.bash", "/usr/share/bash-completion/completions/rackboot"},
	{"zsh", "_rackboot", "/usr/share/zsh/vendor-completions/_rackboot"},
	{"fish", "rackboot.fish", "/usr/share/fish/vendor_completions.d/rackboot.fish"},
}

func writeCompletions(r release) error {
	bin, err := r.hostBinary()
	if err != nil {
		return err
	}
	dir := filepath.Join(r.out, "completions")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range completionFiles {
		var out, errb bytes.Buffer
		cmd := exec.Command(bin, "completion", c.shell)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("rackboot completion %s: %w: %s", c.shell, err, errb.Bytes())
		}
		if out.Len() == 0 {
			return fmt.Errorf("rackboot completion %s wrote nothing", c.shell)
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), out.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
