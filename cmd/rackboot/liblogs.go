package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// libraryLogs is where klog and controller-runtime's root logger write. Both are
// process-wide state of those libraries, not rackboot's: client-go logs through klog
// (leader election, reflectors, API warnings) and parts of controller-runtime and
// Cluster API log through ctrllog.Log when no logger is in their context. Left alone,
// klog writes its own text format to stderr, in the middle of serve's JSON, and
// controller-runtime complains that its logger was never set.
//
// controller-runtime's root logger can be set once per process, so both are set once
// to a handler that forwards to the logger of the latest serve (tests run several).
var libraryLogs struct {
	once sync.Once
	cur  atomic.Pointer[slog.Handler]
}

// routeLibraryLogs sends klog's and controller-runtime's logs to log.
func routeLibraryLogs(log *slog.Logger) {
	h := log.Handler()
	libraryLogs.cur.Store(&h)
	libraryLogs.once.Do(func() {
		klog.SetSlogLogger(slog.New(forwardHandler{}.withAttrs([]slog.Attr{slog.String("logger", "klog")})))
		ctrllog.SetLogger(logr.FromSlogHandler(forwardHandler{}))
	})
}

// forwardHandler hands records to libraryLogs' current handler, with the attributes
// and groups it was given applied to that handler.
type forwardHandler struct {
	wrap []func(slog.Handler) slog.Handler
}

func (f forwardHandler) handler() slog.Handler {
	p := libraryLogs.cur.Load()
	if p == nil {
		return slog.DiscardHandler
	}
	h := *p
	for _, w := range f.wrap {
		h = w(h)
	}
	return h
}

func (f forwardHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return f.handler().Enabled(ctx, l)
}

func (f forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.handler().Handle(ctx, r)
}

func (f forwardHandler) WithAttrs(as []slog.Attr) slog.Handler { return f.withAttrs(as) }

func (f forwardHandler) withAttrs(as []slog.Attr) forwardHandler {
	return forwardHandler{wrap: append(f.wrap[:len(f.wrap):len(f.wrap)], func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })}
}

func (f forwardHandler) WithGroup(name string) slog.Handler {
	return forwardHandler{wrap: append(f.wrap[:len(f.wrap):len(f.wrap)], func(h slog.Handler) slog.Handler { return h.WithGroup(name) })}
}
