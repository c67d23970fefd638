// Command lab-image builds (or finds in the cache) the lab's Debian 12 disk image with
// hack/lab-image.sh, or with --node the Kubernetes node image (lab.EnsureNodeImage), and
// prints where it is, its sha256 and the command that registers it as a rackboot image.
// `make lab-image` and `make node-image` run it; it needs root (debootstrap chroots).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/internal/lab"
)

func main() {
	node := flag.Bool("node", false, "build the Kubernetes node image ("+lab.NodeImageName+") instead of the lab image")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name, ensure := lab.LabImageName, lab.EnsureLabImageLog
	if *node {
		name, ensure = lab.NodeImageName, func(ctx context.Context, w io.Writer) (string, string, error) { return lab.EnsureNodeImage(ctx, w) }
	}
	start := time.Now()
	path, sum, err := ensure(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-image:", err)
		os.Exit(1)
	}
	fmt.Printf("image:  %s\nsha256: %s\n(ready in %v)\nregister it with:\n  rackboot image add %s --file %s --sha256 %s\n",
		path, sum, time.Since(start).Round(time.Second), name, path, sum)
	if *node {
		fmt.Printf("provenance: %s.provenance.json\nkubectl:    %s\n", path, lab.NodeImageTool(path, "kubectl"))
	}
}
