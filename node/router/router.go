// Package router is the in-memory message layer between a node's
// subsystems, keeping the contract of PHPChat's IPC: every subsystem is an
// endpoint registered under an id; a request is answered by a reply carrying
// the same request id; a message goes to one endpoint, or as an event to
// every subscriber of a topic.
//
// The router never blocks a sender. A request to a full inbox fails at once
// with ErrInboxFull; an event for a slow subscriber is dropped and counted.
// Every call has a deadline, and a call to an endpoint that stops fails with
// ErrClosed instead of hanging.
package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Call and Send.
var (
	ErrNoEndpoint = errors.New("no such endpoint")
	ErrClosed     = errors.New("endpoint closed")
	ErrInboxFull  = errors.New("endpoint inbox full")
	ErrDuplicate  = errors.New("endpoint id already registered")
)

// DefaultTimeout bounds a Call whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Router connects endpoints. The zero value is not usable; call New.
type Router struct {
	rid atomic.Uint64

	mu        sync.RWMutex
	endpoints map[string]*Endpoint
	topics    map[string]map[*Subscription]struct{}
	// registered is closed, and replaced, when an endpoint registers.
	registered chan struct{}

	dropped atomic.Uint64
}

// New returns an empty router.
func New() *Router {
	return &Router{
		endpoints:  make(map[string]*Endpoint),
		topics:     make(map[string]map[*Subscription]struct{}),
		registered: make(chan struct{}),
	}
}

// Msg is a message delivered to an endpoint's inbox: a request when it
// expects a reply, a one-way message otherwise.
type Msg struct {
	From string
	RID  uint64 // request id; 0 for one-way messages
	Body any

	ctx     context.Context // the caller's
	reply   chan result
	once    sync.Once
	release func() // ends Bind's context; called by Reply
}

// Context returns the caller's context: it carries the caller's deadline,
// and for a request it ends as soon as the caller stops waiting for the
// reply, whatever the reason. A service stops working on a message whose
// context has ended.
func (m *Msg) Context() context.Context {
	if m.ctx == nil {
		return context.Background()
	}
	return m.ctx
}

// Bind returns a context that ends when ctx (the serving side's) or the
// caller's context ends, or m is answered, with the caller's deadline. Work
// a service does for m runs under it. Bind is called once, by the
// goroutine that takes m from the inbox, and m must then be answered
// (Reply), a one-way message too, to release the context.
func (m *Msg) Bind(ctx context.Context) context.Context {
	mctx, cancel := context.WithCancel(m.Context())
	stop := context.AfterFunc(ctx, cancel)
	m.release = func() {
		stop()
		cancel()
	}
	return mctx
}

type result struct {
	v   any
	err error
}

// IsRequest reports whether the sender waits for a reply.
func (m *Msg) IsRequest() bool { return m.reply != nil }

// Reply answers a request with v or err, and ends the context of Bind.
// Only the first reply counts; replying to a one-way message only ends the
// context. Reply never blocks.
func (m *Msg) Reply(v any, err error) {
	m.once.Do(func() {
		if m.reply != nil {
			m.reply <- result{v, err}
		}
		if m.release != nil {
			m.release()
		}
	})
}

// An Endpoint is one party attached to the router, with its inbox.
type Endpoint struct {
	id     string
	r      *Router
	inbox  chan *Msg
	closed chan struct{}
	once   sync.Once
}

// Register attaches a new endpoint under id with an inbox of the given
// capacity (at least 1).
func (r *Router) Register(id string, inbox int) (*Endpoint, error) {
	if inbox < 1 {
		inbox = 1
	}
	e := &Endpoint{id: id, r: r, inbox: make(chan *Msg, inbox), closed: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.endpoints[id]; ok {
		return nil, fmt.Errorf("register %q: %w", id, ErrDuplicate)
	}
	r.endpoints[id] = e
	close(r.registered)
	r.registered = make(chan struct{})
	return e, nil
}

// Await waits until an endpoint is registered under id, or ctx ends.
func (r *Router) Await(ctx context.Context, id string) error {
	for {
		r.mu.RLock()
		_, ok := r.endpoints[id]
		changed := r.registered
		r.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("await %q: %w", id, ctx.Err())
		}
	}
}

// ID returns the endpoint's id.
func (e *Endpoint) ID() string { return e.id }

// Inbox returns the channel of messages addressed to the endpoint. It is
// never closed; select on Done as well.
func (e *Endpoint) Inbox() <-chan *Msg { return e.inbox }

// Done is closed when the endpoint is closed.
func (e *Endpoint) Done() <-chan struct{} { return e.closed }

// Close detaches the endpoint. Calls waiting for its replies fail with
// ErrClosed, and requests still in its inbox are failed the same way.
func (e *Endpoint) Close() {
	e.once.Do(func() {
		e.r.mu.Lock()
		if e.r.endpoints[e.id] == e {
			delete(e.r.endpoints, e.id)
		}
		e.r.mu.Unlock()
		close(e.closed)
		for {
			select {
			case m := <-e.inbox:
				m.Reply(nil, fmt.Errorf("%s: %w", e.id, ErrClosed))
			default:
				return
			}
		}
	})
}

func (r *Router) lookup(id string) (*Endpoint, error) {
	r.mu.RLock()
	e := r.endpoints[id]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("%q: %w", id, ErrNoEndpoint)
	}
	return e, nil
}

func (e *Endpoint) deliver(to *Endpoint, m *Msg) error {
	select {
	case <-to.closed:
		return fmt.Errorf("%q: %w", to.id, ErrClosed)
	default:
	}
	select {
	case to.inbox <- m:
		return nil
	default:
		return fmt.Errorf("%q: %w", to.id, ErrInboxFull)
	}
}

// Call sends body as a request to endpoint to and waits for its reply, the
// context's deadline or DefaultTimeout, whichever comes first. The request
// carries the context (see Msg.Context), so the callee's work for it ends
// when the caller gives up.
func (e *Endpoint) Call(ctx context.Context, to string, body any) (any, error) {
	target, err := e.r.lookup(to)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	m := &Msg{From: e.id, RID: e.r.rid.Add(1), Body: body, ctx: ctx, reply: make(chan result, 1)}
	if err := e.deliver(target, m); err != nil {
		return nil, err
	}
	select {
	case res := <-m.reply:
		return res.v, res.err
	case <-target.closed:
		// The reply may have been sent just before the close.
		select {
		case res := <-m.reply:
			return res.v, res.err
		default:
			return nil, fmt.Errorf("%q: %w", to, ErrClosed)
		}
	case <-e.closed:
		return nil, fmt.Errorf("caller %q: %w", e.id, ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("call %q (rid %d): %w", to, m.RID, ctx.Err())
	}
}

// Send delivers body to endpoint to without waiting for an answer. The
// message carries ctx (see Msg.Context): the receiver drops it once ctx
// has ended.
func (e *Endpoint) Send(ctx context.Context, to string, body any) error {
	target, err := e.r.lookup(to)
	if err != nil {
		return err
	}
	return e.deliver(target, &Msg{From: e.id, Body: body, ctx: ctx})
}

// Registered reports whether an endpoint is registered under id.
func (r *Router) Registered(id string) bool {
	_, err := r.lookup(id)
	return err == nil
}

// A Subscription receives the events published on one topic.
type Subscription struct {
	r       *Router
	topic   string
	c       chan any
	dropped atomic.Uint64
	once    sync.Once
}

// Subscribe returns a subscription to topic buffering up to buf events.
func (r *Router) Subscribe(topic string, buf int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	s := &Subscription{r: r, topic: topic, c: make(chan any, buf)}
	r.mu.Lock()
	if r.topics[topic] == nil {
		r.topics[topic] = make(map[*Subscription]struct{})
	}
	r.topics[topic][s] = struct{}{}
	r.mu.Unlock()
	return s
}

// C returns the channel of events. It is closed by Unsubscribe.
func (s *Subscription) C() <-chan any { return s.c }

// Dropped returns how many events this subscriber missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Unsubscribe ends the subscription and closes its channel.
func (s *Subscription) Unsubscribe() {
	s.once.Do(func() {
		s.r.mu.Lock()
		delete(s.r.topics[s.topic], s)
		if len(s.r.topics[s.topic]) == 0 {
			delete(s.r.topics, s.topic)
		}
		close(s.c) // under the lock: Publish holds the read lock while sending
		s.r.mu.Unlock()
	})
}

// Subscribers returns how many subscriptions topic has.
func (r *Router) Subscribers(topic string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.topics[topic])
}

// Publish delivers ev to every subscriber of topic that has room for it,
// and returns how many received it. It never blocks.
func (r *Router) Publish(topic string, ev any) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for s := range r.topics[topic] {
		select {
		case s.c <- ev:
			n++
		default:
			s.dropped.Add(1)
			r.dropped.Add(1)
		}
	}
	return n
}

// Stats are the router's counters.
type Stats struct {
	Endpoints     int
	Subscriptions int
	Dropped       uint64 // events dropped for slow subscribers, in all
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := Stats{Endpoints: len(r.endpoints), Dropped: r.dropped.Load()}
	for _, subs := range r.topics {
		st.Subscriptions += len(subs)
	}
	return st
}

// Serve runs handle for each message in e's inbox, one at a time, until
// ctx ends or e is closed. handle gets the context of m.Bind(ctx). A
// message is answered with handle's results; one whose caller has given
// up already is answered with the caller's error and not handled. handle
// must not block for long: it hands long work to a goroutine, answers
// from there with m.Reply (a one-way message too, to end its context) and
// returns ErrDeferred.
func (e *Endpoint) Serve(ctx context.Context, handle func(ctx context.Context, m *Msg) (any, error)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.closed:
			return ErrClosed
		case m := <-e.inbox:
			if err := m.Context().Err(); err != nil {
				m.Reply(nil, err)
				continue
			}
			v, err := handle(m.Bind(ctx), m)
			if errors.Is(err, ErrDeferred) {
				continue
			}
			m.Reply(v, err)
		}
	}
}

// ErrDeferred, returned by a Serve handler, means the handler will reply
// later itself.
var ErrDeferred = errors.New("reply deferred")

// CallAs is Call for a reply of a known type: a reply of another type is
// an error, not a panic.
func CallAs[T any](ctx context.Context, e *Endpoint, to string, body any) (T, error) {
	var zero T
	v, err := e.Call(ctx, to, body)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%s answered %T to %T, want %T", to, v, body, zero)
	}
	return t, nil
}
