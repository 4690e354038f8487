package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// Limits of a WebSocket.
const (
	// QueueLen is the frames waiting to be written to one browser. An
	// event that finds it full is dropped and counted; a reply waits for
	// room up to WriteTimeout.
	QueueLen     = 256
	WriteTimeout = 10 * time.Second
	// IdleTimeout closes a WebSocket that sent nothing this long (the
	// page pings every minute).
	IdleTimeout = 5 * time.Minute
	// PingInterval is how often the server checks that the browser is
	// still there.
	PingInterval = 30 * time.Second
	// maxDiscard is the largest oversize message read to its end (and
	// answered with an error frame) rather than closing the WebSocket.
	maxDiscard = 16 << 20
)

// serveWS upgrades to a WebSocket and serves the control functions on it.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		s.logger.Warn("web: cross-origin WebSocket refused", "origin", clip(r.Header.Get("Origin")), "remote", r.RemoteAddr)
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		http.Error(w, fmt.Sprintf("more than %d web consoles: close one", s.cfg.MaxConns), http.StatusServiceUnavailable)
		return
	}
	defer s.conns.Add(-1)
	// The server's deadlines would end the WebSocket: it keeps its own.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.logger.Debug("web: upgrade", "err", err)
		return
	}
	ws.SetReadLimit(-1) // serve reads at most MaxFrame itself
	s.serveConn(r.Context(), ws)
}

// wsConn is one browser's WebSocket: a control.Conn whose frames go
// through a queue to a writer goroutine.
type wsConn struct {
	s     *Server
	ws    *websocket.Conn
	queue chan []byte
	done  chan struct{} // closed when the connection ends
	once  sync.Once
}

// close ends the connection, once.
func (c *wsConn) close(code websocket.StatusCode, why string) {
	c.once.Do(func() {
		close(c.done)
		c.ws.Close(code, why)
	})
}

// send queues a frame. Events (rid 0 talk.event and msg.event frames)
// are dropped and counted when the queue is full, so that a slow browser
// never holds up the node; any other frame waits for room up to
// WriteTimeout, then the connection is closed.
func (c *wsConn) send(name string, rid uint64, data any) error {
	b, err := control.EncodeFrame(name, rid, data)
	if err != nil {
		return err
	}
	select {
	case c.queue <- b:
		return nil
	case <-c.done:
		return errors.New("web console gone")
	default:
	}
	if rid == 0 && (name == talkapi.EventFrame || name == control.MsgEventFrame) {
		c.s.dropped.Add(1)
		return nil
	}
	t := time.NewTimer(WriteTimeout)
	defer t.Stop()
	select {
	case c.queue <- b:
		return nil
	case <-c.done:
		return errors.New("web console gone")
	case <-t.C:
		c.close(websocket.StatusPolicyViolation, "too slow")
		return errors.New("web console too slow: closed")
	}
}

// writer writes the queued frames, each within WriteTimeout, and pings
// the browser every PingInterval.
func (c *wsConn) writer(ctx context.Context) {
	ping := time.NewTicker(PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case b := <-c.queue:
			wctx, cancel := context.WithTimeout(ctx, WriteTimeout)
			err := c.ws.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, "write failed")
				return
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, WriteTimeout)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, "no pong")
				return
			}
		}
	}
}

// serveConn serves one WebSocket until the browser goes or ctx ends.
func (s *Server) serveConn(ctx context.Context, ws *websocket.Conn) {
	id := fmt.Sprintf("web/%d", s.ids.Add(1))
	logger := s.logger.With("conn", id)
	ep, err := s.cfg.Router.Register(id, 16)
	if err != nil {
		logger.Error("web: register connection", "err", err)
		ws.Close(websocket.StatusInternalError, "")
		return
	}
	defer ep.Close()
	cctx, cancel := context.WithCancel(ctx)
	wc := &wsConn{s: s, ws: ws, queue: make(chan []byte, QueueLen), done: make(chan struct{})}
	c := control.NewConn(cctx, ep, logger, wc.send)
	d := &control.Dispatcher{Handlers: s.cfg.Functions, Timeouts: s.cfg.Timeouts}
	var wg sync.WaitGroup
	wg.Go(func() { wc.writer(ctx) })
	logger.Debug("web: console connected")
	defer func() {
		cancel() // ends console.attach
		wc.once.Do(func() { close(wc.done); ws.CloseNow() })
		d.Wait()
		wg.Wait()
		logger.Debug("web: console gone")
	}()
	go func() {
		select {
		case <-cctx.Done():
			wc.close(websocket.StatusGoingAway, "node stopping")
		case <-wc.done:
			cancel()
		}
	}()
	for {
		line, err := s.readFrame(cctx, wc)
		if errors.Is(err, errTooLarge) {
			c.SendError(0, control.CodeTooLarge, "", fmt.Sprintf("frame over %d bytes", control.MaxFrame))
			continue
		}
		if errors.Is(err, errBinary) {
			c.SendError(0, control.CodeNotJSON, "", "frame is binary, not JSON text")
			continue
		}
		if err != nil {
			if websocket.CloseStatus(err) == -1 && cctx.Err() == nil {
				logger.Debug("web: read", "err", err)
			}
			return
		}
		d.Dispatch(ctx, c, line)
	}
}

var (
	errTooLarge = errors.New("frame too large")
	errBinary   = errors.New("binary frame")
)

// readFrame reads one message of at most control.MaxFrame bytes within
// IdleTimeout. A longer message is read to its end (up to maxDiscard) and
// errTooLarge returned; a binary one gives errBinary.
func (s *Server) readFrame(ctx context.Context, wc *wsConn) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, IdleTimeout)
	defer cancel()
	typ, r, err := wc.ws.Reader(rctx)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, control.MaxFrame+1))
	if err != nil {
		return nil, err
	}
	if len(b) > control.MaxFrame {
		n, err := io.Copy(io.Discard, io.LimitReader(r, maxDiscard))
		if err != nil {
			return nil, err
		}
		if n == maxDiscard {
			wc.close(websocket.StatusMessageTooBig, "frame too large")
			return nil, errors.New("frame far too large")
		}
		return nil, errTooLarge
	}
	if typ != websocket.MessageText {
		return nil, errBinary
	}
	return b, nil
}
