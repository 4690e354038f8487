package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrNotRunning is returned by Dial when no node serves the socket.
var ErrNotRunning = errors.New("no node is running")

// CronRunTimeout is how long a "cron.run" request may take: a whole cycle
// of the scheduler's jobs.
const CronRunTimeout = 5 * time.Minute

// Client is a connection to a running node's control socket. Its methods
// may be called from several goroutines at once: a goroutine reads the
// node's frames, hands each reply to the call waiting for it, and the
// frames that answer no call (events) to Events.
type Client struct {
	nc      net.Conn
	wmu     sync.Mutex    // serializes writes
	done    chan struct{} // closed when the reading goroutine ends
	closing chan struct{} // closed by Close
	closed  sync.Once
	events  chan Frame // closed when the reading goroutine ends

	mu         sync.Mutex
	rid        uint64
	pending    map[uint64]*pendingCall
	wantEvents bool  // Events was called
	err        error // why the connection ended: set before done is closed
}

// pendingCall is a call waiting for its reply.
type pendingCall struct {
	reply   chan Frame // buffered: the reader never waits for the call
	onEvent func(Frame)
}

// Dial connects to the control socket at path. It returns an error wrapping
// ErrNotRunning when nothing listens there.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w (control socket %s: %v)", ErrNotRunning, path, err)
	}
	if err != nil { // such as permission denied: a node may well run
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c := &Client{
		nc:      nc,
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		events:  make(chan Frame),
		pending: make(map[uint64]*pendingCall),
	}
	go c.readLoop(bufio.NewReaderSize(nc, 64<<10))
	return c, nil
}

// Close closes the connection and waits for the reading goroutine to end.
// Calls still waiting fail.
func (c *Client) Close() error {
	var err error
	c.closed.Do(func() {
		close(c.closing)
		err = c.nc.Close()
	})
	<-c.done
	return err
}

// RemoteError is an error frame sent by the node.
type RemoteError struct{ ErrorData }

func (e *RemoteError) Error() string {
	return fmt.Sprintf("node refused %s: %s (code %d)", e.Name, e.Text, e.Code)
}

// Events returns the frames that answer no call: the events that functions
// such as "console.attach" stream (with rid 0), and the replies to
// requests made with Send. Before Events is first called such frames are
// passed to the onEvent of the calls waiting, or dropped. After, the
// reading goroutine waits for each to be received, replies to calls
// included, so the caller must receive them until the channel is closed,
// which it is when the connection ends.
func (c *Client) Events() <-chan Frame {
	c.mu.Lock()
	c.wantEvents = true
	c.mu.Unlock()
	return c.events
}

// Send sends a request without waiting for a reply, such as
// "console.attach", whose answer is a stream of events; its reply or error
// frame, if any, comes to Events. It returns the request's rid.
func (c *Client) Send(name string, data any) (uint64, error) {
	return c.send(name, data, nil)
}

// Call sends a request and decodes the reply's data into out (if not nil).
// It waits until ctx ends, or for CallTimeout if ctx has no deadline. Frames
// that answer no call arriving meanwhile (events) are passed to onEvent, if
// not nil and Events was not called, from the reading goroutine.
func (c *Client) Call(ctx context.Context, name string, data, out any, onEvent func(Frame)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, CallTimeout)
		defer cancel()
	}
	p := &pendingCall{reply: make(chan Frame, 1), onEvent: onEvent}
	rid, err := c.send(name, data, p)
	if err != nil {
		return err
	}
	defer c.forget(rid)
	select {
	case f := <-p.reply:
		return decodeReply(name, f, out)
	case <-c.done:
		select { // the reader hands over a reply before it ends
		case f := <-p.reply:
			return decodeReply(name, f, out)
		default:
			return fmt.Errorf("%s: %w", name, c.err)
		}
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
}

// send writes a request, registering p (if not nil) to get its reply.
func (c *Client) send(name string, data any, p *pendingCall) (uint64, error) {
	c.mu.Lock()
	c.rid++
	rid := c.rid
	if p != nil {
		c.pending[rid] = p
	}
	c.mu.Unlock()
	c.wmu.Lock()
	err := writeFrame(c.nc, name, rid, data)
	c.wmu.Unlock()
	if err != nil {
		c.forget(rid)
		return 0, err
	}
	return rid, nil
}

func (c *Client) forget(rid uint64) {
	c.mu.Lock()
	delete(c.pending, rid)
	c.mu.Unlock()
}

// decodeReply returns the error of an error frame, or decodes f's data
// into out (if not nil).
func decodeReply(name string, f Frame, out any) error {
	if f.Name == "error" {
		return DecodeError(f)
	}
	if out != nil {
		if err := json.Unmarshal(f.Data, out); err != nil {
			return fmt.Errorf("%s: bad reply: %w", name, err)
		}
	}
	return nil
}

// DecodeError returns the *RemoteError that an "error" frame carries.
func DecodeError(f Frame) error {
	var e RemoteError
	if err := json.Unmarshal(f.Data, &e.ErrorData); err != nil {
		return fmt.Errorf("bad error frame: %w", err)
	}
	return &e
}

// errClosed ends the calls of a closed client.
var errClosed = errors.New("connection closed")

// readLoop reads frames until the connection ends, handing them out.
func (c *Client) readLoop(br *bufio.Reader) {
	defer close(c.done)
	defer close(c.events)
	for {
		f, err := readFrame(br)
		if err == nil && c.deliver(f) {
			continue
		}
		select {
		case <-c.closing:
			err = errClosed
		default:
		}
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		return
	}
}

// deliver hands f to its call, to Events or to the calls' onEvent. It
// reports false if the client was closed meanwhile.
func (c *Client) deliver(f Frame) bool {
	c.mu.Lock()
	p, ok := c.pending[f.RID]
	delete(c.pending, f.RID)
	want := c.wantEvents
	var onEvent []func(Frame)
	if !ok && !want {
		for _, q := range c.pending {
			if q.onEvent != nil {
				onEvent = append(onEvent, q.onEvent)
			}
		}
	}
	c.mu.Unlock()
	switch {
	case ok:
		p.reply <- f
	case want:
		select {
		case c.events <- f:
		case <-c.closing:
			return false
		}
	default:
		for _, fn := range onEvent {
			fn(f)
		}
	}
	return true
}

func readFrame(br *bufio.Reader) (Frame, error) {
	var f Frame
	line, err := ReadLine(br, MaxFrame)
	if errors.Is(err, io.EOF) {
		return f, errors.New("the node closed the connection")
	}
	if err != nil {
		return f, fmt.Errorf("read from node: %w", err)
	}
	if err := json.Unmarshal(line, &f); err != nil {
		return f, fmt.Errorf("read from node: %w", err)
	}
	return f, nil
}
