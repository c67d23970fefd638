package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"testing"
	"time"
)

// pollInterval is how often a condition is re-checked: short against boots of tens of
// seconds, long enough not to load the 2 shared cores.
const pollInterval = 100 * time.Millisecond

// Cond is a condition to wait for: done, or an error that ends the wait at once (a process
// that died). A condition that is merely not yet true returns (false, nil) or, to keep a
// reason for the timeout message, (false, ErrNotYet-wrapped error).
type Cond func(ctx context.Context) (bool, error)

// ErrNotYet marks a condition error that does not end the wait; the last one is quoted
// if the wait times out.
var ErrNotYet = errors.New("not yet")

// Poll checks cond every 100 ms until it is done, fails, timeout passes or ctx ends. The
// error names what was awaited and the last reason it was not yet true.
func Poll(ctx context.Context, timeout time.Duration, what string, cond Cond) error {
	return PollEvery(ctx, pollInterval, timeout, what, cond)
}

// PollEvery is Poll checking every interval: for conditions that cost the other side
// real work, such as a List against a TCG guest's API server.
func PollEvery(ctx context.Context, interval, timeout time.Duration, what string, cond Cond) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		switch {
		case ok:
			return nil
		case err != nil && !errors.Is(err, ErrNotYet):
			return fmt.Errorf("waiting for %s: %w", what, err)
		case err != nil:
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: gave up after %v: %v", what, timeout, last)
			}
			return fmt.Errorf("waiting for %s: gave up after %v", what, timeout)
		case <-tick.C:
		}
	}
}

// WaitFor is Poll that fails t.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond Cond) {
	t.Helper()
	if err := Poll(t.Context(), timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// All is done when every cond is; the first hard error ends it.
func All(conds ...Cond) Cond {
	return func(ctx context.Context) (bool, error) {
		for _, c := range conds {
			ok, err := c(ctx)
			if !ok || err != nil {
				return ok, err
			}
		}
		return true, nil
	}
}

// Alive wraps cond so the wait ends with an error as soon as one of procs exits: a server
// that crashed will not answer, and waiting the full timeout only hides why.
func Alive(cond Cond, procs ...*Process) Cond {
	return func(ctx context.Context) (bool, error) {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return false, fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.Name, err, p.Log, Tail(p.Log, 30))
			}
		}
		return cond(ctx)
	}
}

// FileContains is done when the file at path contains substr.
func FileContains(path, substr string) Cond {
	return func(context.Context) (bool, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrNotYet, err)
		}
		return bytes.Contains(b, []byte(substr)), nil
	}
}

// FileMatches is done when re matches the file's content; the match is stored in *match
// (submatches included) if match is not nil.
func FileMatches(path string, re *regexp.Regexp, match *[]string) Cond {
	return func(context.Context) (bool, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrNotYet, err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			return false, nil
		}
		if match != nil {
			*match = (*match)[:0]
			for _, s := range m {
				*match = append(*match, string(s))
			}
		}
		return true, nil
	}
}

// HTTPStatus is done when GET url through client answers with status want.
func HTTPStatus(client *http.Client, url string, want int) Cond {
	return func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrNotYet, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != want {
			return false, fmt.Errorf("%w: GET %s: %s", ErrNotYet, url, resp.Status)
		}
		return true, nil
	}
}
