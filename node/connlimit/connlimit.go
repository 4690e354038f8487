// Package connlimit caps the connections a listener serves at once, for
// the node's servers that clients reach (the mail gateways): a client over
// the cap is told so in the server's protocol and closed.
package connlimit

import (
	"net"
	"sync"
	"time"
)

// Listener serves at most a fixed number of connections at once.
type Listener struct {
	net.Listener
	refusal []byte
	refused func(net.Conn)
	sem     chan struct{}
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// New returns a Listener that serves at most max connections of l at
// once. A connection over the cap is sent refusal (such as an SMTP 421
// line), within a second, and closed; refused, if not nil, is told first.
func New(l net.Listener, max int, refusal string, refused func(net.Conn)) *Listener {
	return &Listener{Listener: l, refusal: []byte(refusal), refused: refused,
		sem: make(chan struct{}, max), conns: make(map[*conn]struct{})}
}

// Accept waits for a connection within the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
		default:
			if l.refused != nil {
				l.refused(c)
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(l.refusal)
			c.Close()
			continue
		}
		lc := &conn{Conn: c, l: l}
		l.mu.Lock()
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		return lc, nil
	}
}

// CloseAll closes every connection still open; their servers then close
// them again, which releases them.
func (l *Listener) CloseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Conn.Close()
	}
}

// Wait waits until every connection handed out has been closed.
func (l *Listener) Wait() { l.wg.Wait() }

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.sem
		c.l.wg.Done()
	})
	return err
}
