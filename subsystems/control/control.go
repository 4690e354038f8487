// Package control serves the node's control socket: a Unix socket in the
// data directory (mode 0600) through which `info`, `console` and other
// commands reach the running node.
//
// The socket carries newline-delimited JSON frames {"name","rid","data"}.
// A client sends a frame naming a function; the node answers with a frame of
// the same name and rid, or with an "error" frame carrying a code and a
// text. Each connection is a router endpoint. A frame that is not JSON, is
// larger than MaxFrame or names an unknown function is answered with an
// error frame, and the connection stays usable.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
)

// Frame is one message on the control socket.
type Frame struct {
	Name string          `json:"name"`
	RID  uint64          `json:"rid,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ErrorData is the data of an "error" frame.
type ErrorData struct {
	Code int    `json:"code"`
	Text string `json:"text"`
	Name string `json:"name,omitempty"` // the name of the frame refused
}

// Error codes of the control socket: the 9xxx codes of the peer
// protocol's table (docs/protocol.md), with the same meanings.
const (
	CodeInvalid     = 9000 // data not what the function takes
	CodeUnknown     = 9020 // no such function
	CodeTooLarge    = 9040 // frame over MaxFrame
	CodeBusy        = 9050 // too many requests in flight on the connection
	CodeFailed      = 9060 // the function failed; the text says why
	CodeBadEnvelope = 9070 // JSON, but not an envelope with a name
	CodeNotJSON     = 9080 // not JSON text
)

// Limits of a connection.
const (
	MaxFrame    = 1 << 20          // bytes in one frame, newline excluded
	MaxInFlight = 16               // requests being handled at once
	IdleTimeout = 10 * time.Minute // a connection silent this long is closed
	CallTimeout = 30 * time.Second // a request's deadline
)

// DefaultMaxClients is the default of Server.MaxClients.
const DefaultMaxClients = 64

// A Handler answers one function. Its result is sent as the data of the
// reply frame; an error becomes an error frame with CodeFailed, or the code
// of a *CodeError.
type Handler func(ctx context.Context, c *Conn, data json.RawMessage) (any, error)

// CodeError is an error with a control-socket error code.
type CodeError struct {
	Code int
	Err  error
}

func (e *CodeError) Error() string { return e.Err.Error() }
func (e *CodeError) Unwrap() error { return e.Err }

// Server serves the control socket.
type Server struct {
	Path     string
	Router   *router.Router
	Logger   *slog.Logger
	Handlers map[string]Handler
	// Timeouts gives functions that may take longer than CallTimeout
	// (such as a whole cron cycle) their own deadline.
	Timeouts map[string]time.Duration
	// MaxClients bounds the connections served at once (0 means
	// DefaultMaxClients). A client over it is sent an error frame with
	// CodeBusy and closed.
	MaxClients int

	conns   atomic.Uint64
	clients atomic.Int64 // connections being served
}

// MaxPath is the longest socket path the kernel accepts (sun_path).
const MaxPath = 107

// Listen opens the socket at s.Path, replacing a stale one: the caller
// holds the data directory's lock, so no other node serves it.
func (s *Server) Listen() (*net.UnixListener, error) {
	if len(s.Path) > MaxPath {
		return nil, fmt.Errorf("control socket path %s is %d bytes, at most %d: choose a shorter --data-dir", s.Path, len(s.Path), MaxPath)
	}
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(s.Path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	return l, nil
}

// Run serves the socket until ctx ends, then closes every connection.
func (s *Server) Run(ctx context.Context, ready func()) error {
	l, err := s.Listen()
	if err != nil {
		return err
	}
	ready()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); l.Close() }()
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, then go on.
			s.Logger.Warn("control: accept", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.admit(nc) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.clients.Add(-1)
			s.serveConn(ctx, nc)
		}()
	}
}

// admit counts nc as a client served, or, over MaxClients, tells it so
// with an error frame and closes it. The frame fits in the socket's
// buffer: writing it does not hold up the accepting loop.
func (s *Server) admit(nc *net.UnixConn) bool {
	limit := s.MaxClients
	if limit <= 0 {
		limit = DefaultMaxClients
	}
	if s.clients.Add(1) <= int64(limit) {
		return true
	}
	s.clients.Add(-1)
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	b, _ := json.Marshal(ErrorData{Code: CodeBusy, Text: fmt.Sprintf("more than %d control clients: try again later", limit)})
	f, _ := json.Marshal(Frame{Name: "error", Data: b})
	nc.Write(append(f, '\n'))
	nc.Close()
	s.Logger.Debug("control: client refused", "max_clients", limit)
	return false
}

// Conn is one client connection, a router endpoint for as long as it lasts.
type Conn struct {
	Endpoint *router.Endpoint
	Logger   *slog.Logger

	send func(name string, rid uint64, data any) error
	ctx  context.Context
}

// NewConn returns a client connection that is the router endpoint ep, whose
// frames are written by send (which must be safe for concurrent use) and
// whose Context is ctx. It is how a transport other than the socket, such
// as the web console's WebSocket, serves the same functions.
func NewConn(ctx context.Context, ep *router.Endpoint, logger *slog.Logger, send func(name string, rid uint64, data any) error) *Conn {
	return &Conn{Endpoint: ep, Logger: logger, send: send, ctx: ctx}
}

// Context returns a context that ends when the client goes away or stops
// sending (closes the connection or shuts down its writing side), or the
// server stops.
func (c *Conn) Context() context.Context { return c.ctx }

// Send writes a frame to the client; it is safe for concurrent use, and is
// how handlers push events (such as "You got mail.") to a client.
func (c *Conn) Send(name string, rid uint64, data any) error {
	return c.send(name, rid, data)
}

// EncodeFrame encodes one frame, without a newline.
func EncodeFrame(name string, rid uint64, data any) ([]byte, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s frame: %w", name, err)
	}
	b, err := json.Marshal(Frame{Name: name, RID: rid, Data: raw})
	if err != nil {
		return nil, fmt.Errorf("encode %s frame: %w", name, err)
	}
	return b, nil
}

// writeFrame encodes one frame and writes it to nc, within 10 s.
func writeFrame(nc net.Conn, name string, rid uint64, data any) error {
	b, err := EncodeFrame(name, rid, data)
	if err != nil {
		return err
	}
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write %s frame: %w", name, err)
	}
	return nil
}

// SendError sends an error frame answering the frame rid of the given name.
func (c *Conn) SendError(rid uint64, code int, name, text string) {
	if err := c.Send("error", rid, ErrorData{Code: code, Text: text, Name: name}); err != nil {
		c.Logger.Debug("control: error frame not sent", "err", err)
	}
}

func (s *Server) serveConn(ctx context.Context, nc *net.UnixConn) {
	defer nc.Close()
	id := fmt.Sprintf("control/%d", s.conns.Add(1))
	ep, err := s.Router.Register(id, 16)
	if err != nil {
		s.Logger.Error("control: register connection", "err", err)
		return
	}
	defer ep.Close()
	cctx, cancel := context.WithCancel(ctx)
	var wmu sync.Mutex
	c := NewConn(cctx, ep, s.Logger.With("conn", id), func(name string, rid uint64, data any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(nc, name, rid, data)
	})
	go func() { <-cctx.Done(); nc.SetReadDeadline(time.Now()) }() // unblock the reader
	c.Logger.Debug("control: client connected")
	defer c.Logger.Debug("control: client gone")

	// When reading ends, the client has gone or sends no more: end the
	// connection's context at once, so that handlers serving the client
	// for as long as it stays (console.attach) stop now, then wait for
	// the others. Those run on the server's context: a client that shut
	// down only its writing side still gets its replies.
	d := &Dispatcher{Handlers: s.Handlers, Timeouts: s.Timeouts}
	defer func() {
		cancel()
		d.Wait()
	}()
	br := bufio.NewReaderSize(nc, 64<<10)
	for {
		nc.SetReadDeadline(time.Now().Add(IdleTimeout))
		line, err := ReadLine(br, MaxFrame)
		if errors.Is(err, ErrFrameTooLarge) {
			c.SendError(0, CodeTooLarge, "", fmt.Sprintf("frame over %d bytes", MaxFrame))
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && cctx.Err() == nil {
				c.Logger.Debug("control: read", "err", err)
			}
			return
		}
		d.Dispatch(ctx, c, line)
	}
}

// A Dispatcher answers the request frames of one connection with a
// function table. The control socket and the web console's WebSocket share
// it, so that both offer the same functions with the same error codes.
type Dispatcher struct {
	Handlers map[string]Handler
	// Timeouts gives functions their own deadline instead of CallTimeout.
	Timeouts map[string]time.Duration

	once sync.Once
	sem  chan struct{}
	wg   sync.WaitGroup
}

// Dispatch answers one frame received on c: with an error frame at once if
// it is not a request of a known function or MaxInFlight requests are being
// handled, else with the function's reply, from a goroutine of its own
// that runs on ctx (the server's) within the function's deadline.
func (d *Dispatcher) Dispatch(ctx context.Context, c *Conn, line []byte) {
	d.once.Do(func() { d.sem = make(chan struct{}, MaxInFlight) })
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	var f Frame
	if err := json.Unmarshal(line, &f); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			c.SendError(0, CodeNotJSON, "", "frame is not JSON: "+err.Error())
		} else {
			c.SendError(0, CodeBadEnvelope, "", "frame is not an envelope {name, rid, data}: "+err.Error())
		}
		return
	}
	if f.Name == "" {
		c.SendError(f.RID, CodeBadEnvelope, "", "frame has no name")
		return
	}
	h, ok := d.Handlers[f.Name]
	if !ok {
		c.SendError(f.RID, CodeUnknown, f.Name, fmt.Sprintf("unknown function %q", f.Name))
		return
	}
	select {
	case d.sem <- struct{}{}:
	default:
		c.SendError(f.RID, CodeBusy, f.Name, fmt.Sprintf("more than %d requests in flight", MaxInFlight))
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer func() { <-d.sem }()
		timeout := CallTimeout
		if t, ok := d.Timeouts[f.Name]; ok {
			timeout = t
		}
		handle(ctx, c, h, f, timeout)
	}()
}

// Wait waits until the requests dispatched have been answered.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// handle answers one request, within timeout or until ctx (the server's)
// ends.
func handle(ctx context.Context, c *Conn, h Handler, f Frame, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := h(ctx, c, f.Data)
	if err != nil {
		code := CodeFailed
		var ce *CodeError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		c.SendError(f.RID, code, f.Name, err.Error())
		return
	}
	if err := c.Send(f.Name, f.RID, v); err != nil {
		c.Logger.Debug("control: reply not sent", "err", err)
	}
}

// ErrFrameTooLarge is returned by ReadLine for a line over the limit.
var ErrFrameTooLarge = errors.New("frame too large")

// ReadLine reads one newline-terminated line of at most max bytes (the
// newline excluded) and returns it without the newline. A longer line is
// read to its end and dropped, and ErrFrameTooLarge returned, so the
// reader stays in step and never holds more than max bytes.
func ReadLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLarge := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLarge {
			if len(line)+len(chunk) > max+1 {
				tooLarge, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLarge {
				return nil, ErrFrameTooLarge
			}
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0 && !tooLarge:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
