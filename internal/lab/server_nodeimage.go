package lab

import (
	"context"
	"fmt"
	"io"
)

// AddNodeImage registers the Kubernetes node image (EnsureNodeImage: built on first use,
// its progress and the CLI's answer written to out) as NodeImageName.
func (s *Server) AddNodeImage(ctx context.Context, out io.Writer) error {
	return s.addImage(ctx, out, NodeImageName, EnsureNodeImage)
}

// addImage registers the image ensure returns under name, through the CLI as an
// operator would.
func (s *Server) addImage(ctx context.Context, out io.Writer, name string, ensure func(context.Context, io.Writer) (string, string, error)) error {
	image, sum, err := ensure(ctx, out)
	if err != nil {
		return err
	}
	b, err := s.CLI(ctx, "image", "add", name, "--file", image, "--sha256", sum, "--format", "zstd")
	if err != nil {
		return fmt.Errorf("rackboot image add %s: %w\n%s", name, err, b)
	}
	_, err = out.Write(b)
	return err
}
