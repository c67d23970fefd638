// Package ratelimit owns rackboot's per-source rate limits: a token bucket
// (golang.org/x/time/rate) per client address, for routes a stranger on the
// provisioning network can call as often as it likes (iPXE scripts, metadata, discovery),
// and for the events such traffic may write (per address, or per MAC for DHCP).
//
// Memory is bounded: the buckets live in an LRU cache (k8s.io/utils/lru) of at most
// Config.MaxSources addresses. An address pushed out by newer ones starts again with a
// full bucket, which costs the server only that one burst; no address can grow the
// cache. IPv6 sources are keyed by their /64, since one host can use a whole one.
package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// DefaultMaxSources is how many addresses are remembered by default: more hosts than
// one provisioning network holds, a few hundred kilobytes at most.
const DefaultMaxSources = 8192

// Config is one limit: PerSecond requests per second per source, with bursts of Burst.
type Config struct {
	PerSecond float64 `yaml:"perSecond" doc:"requests per second from one address"`
	Burst     int     `yaml:"burst" doc:"requests one address may send at once"`
	// MaxSources bounds the addresses remembered; 0 means DefaultMaxSources.
	MaxSources int `yaml:"maxSources" doc:"source addresses remembered (0: 8192)"`
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks the limit. Its messages start with the field's name (perSecond,
// burst, maxSources) so a caller can prefix its configuration path.
func (c Config) Validate() error {
	switch {
	case c.PerSecond <= 0:
		return fmt.Errorf("perSecond: %v: give a positive rate, e.g. 2 (requests per second from one address)", c.PerSecond)
	case c.Burst < 1:
		return fmt.Errorf("burst: %d: give at least 1 (requests one address may send at once)", c.Burst)
	case c.MaxSources < 0:
		return fmt.Errorf("maxSources: %d: give a positive number, or leave it out for %d", c.MaxSources, DefaultMaxSources)
	}
	return nil
}

// Limiter keeps one token bucket per source address. Its methods are safe for
// concurrent use.
type Limiter struct {
	cfg   Config
	cache *lru.Cache
	now   func() time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, cache: lru.New(cfg.MaxSources), now: cfg.Now}, nil
}

// ErrLimited is what callers may return for a refused request.
var ErrLimited = errors.New("rate limited: too many requests from this address")

// Allow reports whether src may make one more request now, and takes the token if so.
// An invalid address shares one bucket with every other invalid address.
func (l *Limiter) Allow(src netip.Addr) bool {
	return l.bucket(Key(src)).AllowN(l.now(), 1)
}

// AllowKey is Allow for a source named by something other than its address, such as
// the MAC a DHCP packet claims. Keys never share a bucket with addresses.
func (l *Limiter) AllowKey(key string) bool {
	return l.bucket(key).AllowN(l.now(), 1)
}

// RetryAfter is how long src must wait for its next token (0 when one is there).
func (l *Limiter) RetryAfter(src netip.Addr) time.Duration {
	r := l.bucket(Key(src)).ReserveN(l.now(), 1)
	if !r.OK() {
		return time.Second
	}
	d := r.DelayFrom(l.now())
	r.CancelAt(l.now())
	return d
}

// Sources is how many addresses are remembered now (at most MaxSources).
func (l *Limiter) Sources() int { return l.cache.Len() }

// bucket finds key's bucket: a netip.Addr (as Key returns it) or a string.
func (l *Limiter) bucket(key any) *rate.Limiter {
	if v, ok := l.cache.Get(key); ok {
		return v.(*rate.Limiter)
	}
	b := rate.NewLimiter(rate.Limit(l.cfg.PerSecond), l.cfg.Burst)
	// Two requests racing here may each make a bucket; the second Add wins and the
	// first request's token is not counted: harmless, and no lock held across calls.
	l.cache.Add(key, b)
	return b
}

// Key is the address a source is counted under: IPv4 (or IPv4-mapped) addresses as
// they are, IPv6 addresses by their /64.
func Key(src netip.Addr) netip.Addr {
	src = src.Unmap()
	if src.Is6() {
		p, err := src.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return src
}
