package lab

import (
	"sync"
)

// Cleaner is where the harness registers teardown: *testing.T and *testing.B satisfy it,
// and Stack does for the `make lab` command, which has no testing.T. Teardown registered
// this way runs even when a test fails half-way, in reverse order of registration, so
// processes die before the namespaces they run in are deleted.
type Cleaner interface {
	Cleanup(func())
}

// failureReporter is the optional part of a Cleaner that lets teardown print the tail of
// a process log when a test failed; *testing.T has it.
type failureReporter interface {
	Failed() bool
	Logf(format string, args ...any)
}

// Stack is a Cleaner for programs: Close runs what was registered, last first. The zero
// value is ready to use.
type Stack struct {
	mu  sync.Mutex
	fns []func()
}

// Cleanup registers fn to run on Close.
func (s *Stack) Cleanup(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, fn)
}

// Close runs the registered functions in reverse order. It is safe to call more than
// once; each function runs once.
func (s *Stack) Close() {
	for {
		s.mu.Lock()
		if len(s.fns) == 0 {
			s.mu.Unlock()
			return
		}
		fn := s.fns[len(s.fns)-1]
		s.fns = s.fns[:len(s.fns)-1]
		s.mu.Unlock()
		fn()
	}
}
