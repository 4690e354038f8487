package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Client is a connection to a running node's control socket.
type Client struct {
	nc  net.Conn
	br  *bufio.Reader
	mu  sync.Mutex
	rid uint64
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
	return &Client{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// RemoteError is an error frame sent by the node.
type RemoteError struct{ ErrorData }

func (e *RemoteError) Error() string {
	return fmt.Sprintf("node refused %s: %s (code %d)", e.Name, e.Text, e.Code)
}

// Call sends a request and decodes the reply's data into out (if not nil).
// Frames of other rids arriving meanwhile (events) are passed to onEvent,
// if not nil, and otherwise dropped.
func (c *Client) Call(ctx context.Context, name string, data, out any, onEvent func(Frame)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rid++
	rid := c.rid
	if err := c.write(name, rid, data); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(CallTimeout)
	}
	c.nc.SetReadDeadline(deadline)
	for {
		f, err := c.read()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if f.RID != rid {
			if onEvent != nil {
				onEvent(f)
			}
			continue
		}
		if f.Name == "error" {
			var e RemoteError
			if err := json.Unmarshal(f.Data, &e.ErrorData); err != nil {
				return fmt.Errorf("%s: bad error frame: %w", name, err)
			}
			return &e
		}
		if out != nil {
			if err := json.Unmarshal(f.Data, out); err != nil {
				return fmt.Errorf("%s: bad reply: %w", name, err)
			}
		}
		return nil
	}
}

func (c *Client) write(name string, rid uint64, data any) error {
	return writeFrame(c.nc, name, rid, data)
}

func (c *Client) read() (Frame, error) {
	var f Frame
	line, err := ReadLine(c.br, MaxFrame)
	if err != nil {
		return f, fmt.Errorf("read from node: %w", err)
	}
	if err := json.Unmarshal(line, &f); err != nil {
		return f, fmt.Errorf("read from node: %w", err)
	}
	return f, nil
}
