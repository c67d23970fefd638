// Command lab-image builds (or finds in the cache) the lab's Debian 12 disk image with
// hack/lab-image.sh and prints where it is, its sha256 and the command that registers it
// as a rackboot image. `make lab-image` runs it; it needs root (debootstrap chroots).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	path, sum, err := lab.EnsureLabImageLog(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-image:", err)
		os.Exit(1)
	}
	fmt.Printf("image:  %s\nsha256: %s\n(ready in %v)\nregister it with:\n  rackboot image add %s --file %s --sha256 %s\n",
		path, sum, time.Since(start).Round(time.Second), lab.LabImageName, path, sum)
}
