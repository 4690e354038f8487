package peer

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of NewLimitedHandler, as the kernel uses it for the log lines
// peers cause.
const (
	DefaultLogRate  = 5  // lines of one kind a second, on average
	DefaultLogBurst = 20 // lines of one kind at once
)

// maxLogKinds bounds the kinds a limited handler tracks: messages are
// constants of the code, but a caller could make them up.
const maxLogKinds = 256

// NewLimitedHandler returns a handler that passes records to h at most
// rate a second for each message (each kind of line), in bursts of at most
// burst, and drops the others. The next record of a kind that passes after
// some were dropped carries their number as the attribute "dropped". It
// is for the lines peers cause (connections, refusals, protocol errors):
// a peer, or many, can make them as fast as they like, and the log must
// not grow with them.
func NewLimitedHandler(h slog.Handler, rate float64, burst int) slog.Handler {
	return &limitedHandler{h: h, l: &logLimiter{rate: rate, burst: float64(burst), now: time.Now, kinds: make(map[string]*bucket)}}
}

type limitedHandler struct {
	h slog.Handler
	l *logLimiter // shared by the handlers made WithAttrs and WithGroup
}

func (h *limitedHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.h.Enabled(ctx, level)
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	ok, dropped := h.l.allow(r.Message)
	if !ok {
		return nil
	}
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Uint64("dropped", dropped))
	}
	return h.h.Handle(ctx, r)
}

func (h *limitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitedHandler{h: h.h.WithAttrs(as), l: h.l}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{h: h.h.WithGroup(name), l: h.l}
}

// logLimiter keeps a token bucket per kind of line.
type logLimiter struct {
	rate, burst float64
	now         func() time.Time // for tests

	mu    sync.Mutex
	kinds map[string]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped uint64
}

// allow takes a token for a line of kind, and reports whether there was
// one and, if so, how many lines of the kind were dropped before it.
func (l *logLimiter) allow(kind string) (ok bool, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.kinds[kind]
	if b == nil {
		if len(l.kinds) >= maxLogKinds {
			kind = "" // one bucket for the rest
			b = l.kinds[kind]
		}
		if b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.kinds[kind] = b
		}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		b.dropped++
		return false, 0
	}
	b.tokens--
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}
