//go:build !linux

package hotfile

import (
	"errors"
	"os"
)

// newMemFile is Linux's (memfd and sendfile); elsewhere the body is written from memory.
func newMemFile(string, []byte) *memFile { return nil }

func (m *memFile) reopen() (*os.File, error) { return nil, errors.New("hotfile: no memfd") }
