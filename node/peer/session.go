package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Info describes the peer of a session, as the handshake found it.
type Info struct {
	// Address is the peer's address, from its TLS certificate.
	Address identity.Address
	// Hello and ID are what the peer sent.
	Hello wire.Hello
	ID    wire.ID
	// RemoteAddr is the peer's network address.
	RemoteAddr net.Addr
}

// Stats are a session's counters.
type Stats struct {
	// BytesIn and BytesOut count the raw bytes read and written on the
	// connection, TLS included, if it was made by package transport.
	BytesIn, BytesOut uint64
	// FramesIn and FramesOut count frames.
	FramesIn, FramesOut uint64
	// FirstSeen is when the handshake completed; LastSeen when the last
	// frame arrived.
	FirstSeen, LastSeen time.Time
	// Queued is the number of frames waiting to be written; Pending the
	// number of Calls waiting for a reply.
	Queued, Pending int
}

// Session states.
const (
	stateIdle    = iota // after Handshake, before Run
	stateRunning        // Run serving
	stateClosing        // shutdown begun
)

// A Session is an identified connection to a peer. Its methods are safe
// for concurrent use.
type Session struct {
	cfg  Config
	conn *tls.Conn
	cc   *transport.CountingConn // nil if the connection is not counted
	r    *wire.Reader
	info Info
	odd  bool // this side's request ids are odd
	rid  atomic.Uint64

	out      chan []byte // frames to write, LF included
	outBytes atomic.Int64

	mu      sync.Mutex
	state   int
	err     error
	final   [][]byte // frames to write last (error, quit)
	pending map[uint64]chan wire.Envelope

	dl          sync.Mutex // orders deadline changes against closing
	closingFlag bool

	closing chan struct{} // closed when the session starts to close
	done    chan struct{} // closed when everything has stopped

	peerErr *wire.ProtocolError // the last frame, if it was an error; reader only

	firstSeen time.Time
	lastSeen  atomic.Int64 // unix nanoseconds
	framesIn  atomic.Uint64
	framesOut atomic.Uint64
}

func newSession(conn *tls.Conn, cfg Config, addr identity.Address) *Session {
	s := &Session{
		cfg:     cfg,
		conn:    conn,
		r:       wire.NewReader(conn, cfg.MaxFrameSize),
		info:    Info{Address: addr, RemoteAddr: conn.RemoteAddr()},
		odd:     lesser(cfg.Identity.Address, addr),
		out:     make(chan []byte, cfg.SendQueue),
		pending: make(map[uint64]chan wire.Envelope),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.cc, _ = conn.NetConn().(*transport.CountingConn)
	return s
}

// Peer returns the peer's address.
func (s *Session) Peer() identity.Address { return s.info.Address }

// Info returns what the handshake learnt of the peer.
func (s *Session) Info() Info { return s.info }

// Done returns a channel closed when the session has stopped: its
// goroutines have ended and its connection is closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session stopped, or nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	st := Stats{
		FramesIn:  s.framesIn.Load(),
		FramesOut: s.framesOut.Load(),
		FirstSeen: s.firstSeen,
		LastSeen:  time.Unix(0, s.lastSeen.Load()),
		Queued:    len(s.out),
	}
	if s.cc != nil {
		st.BytesIn, st.BytesOut = s.cc.BytesRead(), s.cc.BytesWritten()
	}
	s.mu.Lock()
	st.Pending = len(s.pending)
	s.mu.Unlock()
	return st
}

// Run serves the session until it ends: when Close is called, ctx ends
// (the peer is sent quit), the peer quits or breaks the protocol, or the
// connection fails. It returns the reason, as Err does, once the session's
// goroutines have stopped and its connection is closed. Run may be called
// only once.
func (s *Session) Run(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case stateRunning:
		s.mu.Unlock()
		return errors.New("peer: Run called twice")
	case stateClosing:
		s.mu.Unlock()
		<-s.done
		return s.Err()
	}
	s.state = stateRunning
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.Close("shutting down") })
	defer stop()
	wdone := make(chan struct{})
	go s.writeLoop(wdone)
	s.readLoop()
	<-wdone
	s.closeConn()
	close(s.done)
	return s.Err()
}

// Close ends the session: frames already queued are sent, then quit with
// reason, and the connection is closed once the peer has closed its side
// or Config.CloseTimeout has passed. Close does not wait; see Done. After
// the first, calls do nothing.
func (s *Session) Close(reason string) {
	q, _ := wire.AppendFrame(nil, wire.NameQuit, 0, wire.NewQuit(reason))
	s.shutdown(fmt.Errorf("%w: %s", ErrClosed, reason), q)
}

// CloseWithError ends the session as Close does, telling the peer why with
// an error frame before quit: wire.CodeDuplicateSession when the kernel
// keeps another session with this peer, wire.CodeTooManyConnections, ….
func (s *Session) CloseWithError(code wire.Code, text string) {
	if text == "" {
		text = code.Text()
	}
	s.shutdown(&wire.ProtocolError{Code: code, Text: text, Err: ErrClosed}, finalFrames(code, "", 0, text)...)
}

// Send queues a one-way frame. It does not wait for the network: it fails
// at once with ErrQueueFull when the queue is full, and with an error
// wrapping ErrClosed once the session is closing.
func (s *Session) Send(ctx context.Context, name string, data any) error {
	return s.send(ctx, name, 0, data)
}

// Reply queues the answer to the request req, a frame with req's rid.
func (s *Session) Reply(ctx context.Context, req wire.Envelope, name string, data any) error {
	return s.send(ctx, name, req.RID, data)
}

// SendError queues an error frame about req (carrying its rid and name).
// An empty text means the code's standard text.
func (s *Session) SendError(ctx context.Context, req wire.Envelope, code wire.Code, text string) error {
	return s.send(ctx, wire.NameError, req.RID, wire.NewError(code, req.Name, text))
}

func (s *Session) send(ctx context.Context, name string, rid uint64, data any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("peer: send %s: %w", name, err)
	}
	b, err := wire.AppendFrame(nil, name, rid, data)
	if err != nil {
		return fmt.Errorf("peer: send %s: %w", name, err)
	}
	return s.enqueue(name, b)
}

// enqueue puts the frame b on the outbound queue without blocking.
func (s *Session) enqueue(name string, b []byte) error {
	if len(b)-1 > s.cfg.MaxFrameSize {
		return fmt.Errorf("peer: send %s: %w (%d bytes, limit %d)", name, wire.ErrFrameTooLarge, len(b)-1, s.cfg.MaxFrameSize)
	}
	select {
	case <-s.closing:
		return fmt.Errorf("peer: send %s: %w", name, ErrClosed)
	default:
	}
	n := int64(len(b))
	if total := s.outBytes.Add(n); total > int64(s.cfg.SendQueueBytes) && total > n {
		s.outBytes.Add(-n)
		return fmt.Errorf("peer: send %s: %w", name, ErrQueueFull)
	}
	select {
	case s.out <- b:
		return nil
	default:
		s.outBytes.Add(-n)
		return fmt.Errorf("peer: send %s: %w", name, ErrQueueFull)
	}
}

// Call sends a request and waits for its reply: the frame from the peer
// with the same rid. A reply that is an error frame is returned with a
// *wire.ProtocolError (Remote). Call fails at once when the queue is full or
// MaxPendingCalls are in flight, and waits no longer than ctx, or
// Config.CallTimeout when ctx has no deadline.
func (s *Session) Call(ctx context.Context, name string, data any) (wire.Envelope, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.CallTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return wire.Envelope{}, fmt.Errorf("peer: call %s: %w", name, err)
	}
	rid := s.newRID()
	b, err := wire.AppendFrame(nil, name, rid, data)
	if err != nil {
		return wire.Envelope{}, fmt.Errorf("peer: call %s: %w", name, err)
	}
	reply := make(chan wire.Envelope, 1)
	s.mu.Lock()
	if len(s.pending) >= s.cfg.MaxPendingCalls {
		s.mu.Unlock()
		return wire.Envelope{}, fmt.Errorf("peer: call %s: %w", name, ErrTooManyCalls)
	}
	s.pending[rid] = reply
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, rid)
		s.mu.Unlock()
	}()
	if err := s.enqueue(name, b); err != nil {
		return wire.Envelope{}, err
	}
	select {
	case e := <-reply:
		return s.replyResult(name, e)
	case <-s.closing:
		select {
		case e := <-reply:
			return s.replyResult(name, e)
		default:
		}
		return wire.Envelope{}, fmt.Errorf("peer: call %s (rid %d): %w", name, rid, ErrClosed)
	case <-ctx.Done():
		return wire.Envelope{}, fmt.Errorf("peer: call %s (rid %d): %w", name, rid, ctx.Err())
	}
}

func (s *Session) replyResult(name string, e wire.Envelope) (wire.Envelope, error) {
	if e.Name != wire.NameError {
		return e, nil
	}
	we, err := wire.DecodeError(e)
	if err != nil {
		we = wire.NewError(wire.CodeUnknown, name, "malformed error frame")
	}
	if we.Name == "" {
		we.Name = name
	}
	return e, &wire.ProtocolError{Code: we.Code, Text: we.Text, Name: we.Name, Remote: true}
}

// newRID returns a request id of this side's parity.
func (s *Session) newRID() uint64 {
	n := s.rid.Add(1)
	if s.odd {
		return 2*n - 1
	}
	return 2 * n
}

// ours reports whether rid is of this side's parity: a reply to us.
func (s *Session) ours(rid uint64) bool { return rid != 0 && (rid%2 == 1) == s.odd }

// shutdown begins closing the session for err, with final frames to send
// last. Only the first call counts. It does not block.
func (s *Session) shutdown(err error, final ...[]byte) {
	s.mu.Lock()
	if s.state == stateClosing {
		s.mu.Unlock()
		return
	}
	idle := s.state == stateIdle
	s.state, s.err, s.final = stateClosing, err, final
	close(s.closing)
	s.mu.Unlock()

	// Cut blocked reads and writes short: what remains is to send the last
	// frames and to wait for the peer to close.
	s.dl.Lock()
	s.closingFlag = true
	s.conn.SetDeadline(time.Now().Add(s.cfg.CloseTimeout))
	s.dl.Unlock()

	if idle {
		go func() {
			s.closeIdle()
			close(s.done)
		}()
	}
}

// shutdownIdle closes a session that is not running (during the handshake)
// and waits until it is closed.
func (s *Session) shutdownIdle(err error, final ...[]byte) {
	s.mu.Lock()
	s.state = stateClosing
	s.err, s.final = err, final
	close(s.closing)
	s.mu.Unlock()
	s.conn.SetDeadline(time.Now().Add(s.cfg.CloseTimeout))
	s.closeIdle()
	close(s.done)
}

// closeIdle sends what is queued and the final frames, then lingers and
// closes, on the calling goroutine.
func (s *Session) closeIdle() {
	s.finish(nil)
	for {
		if _, err := s.r.ReadFrame(); err != nil && !errors.Is(err, wire.ErrFrameTooLarge) {
			break
		}
	}
	s.closeConn()
}

// closeConn closes the connection without TLS's close_notify, whose write
// may block: quit says as much.
func (s *Session) closeConn() { s.conn.NetConn().Close() }

// setReadDeadline arms the idle timeout for the next read, unless the
// session is closing and already has its last deadline.
func (s *Session) setReadDeadline() {
	s.dl.Lock()
	if !s.closingFlag {
		s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	}
	s.dl.Unlock()
}

func (s *Session) setWriteDeadline() {
	s.dl.Lock()
	if !s.closingFlag {
		s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	}
	s.dl.Unlock()
}

// readLoop reads and dispatches frames until the session closes and the
// peer has closed its side or the last deadline passed.
func (s *Session) readLoop() {
	for {
		s.setReadDeadline()
		frame, err := s.r.ReadFrame()
		select {
		case <-s.closing:
			// Closing: drain what the peer still sends, so that closing
			// does not reset the connection and lose our last frames.
			if err != nil && !errors.Is(err, wire.ErrFrameTooLarge) {
				return
			}
			continue
		default:
		}
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrFrameTooLarge):
				s.fail(wire.CodeFrameTooLarge, "", fmt.Sprintf("frame over %d bytes", s.cfg.MaxFrameSize), err)
			case errors.Is(err, os.ErrDeadlineExceeded):
				s.fail(wire.CodeTimeout, "", fmt.Sprintf("nothing received for %v", s.cfg.IdleTimeout), err)
			case errors.Is(err, io.EOF):
				s.shutdown(fmt.Errorf("peer: connection closed by %s: %w", s.info.Address, err))
				return
			default:
				s.shutdown(fmt.Errorf("peer: read from %s: %w", s.info.Address, err))
				return
			}
			continue
		}
		s.framesIn.Add(1)
		s.lastSeen.Store(time.Now().UnixNano())
		e, err := wire.ParseEnvelope(frame)
		if err != nil {
			code := wire.CodeBadEnvelope
			if errors.Is(err, wire.ErrNotJSON) {
				code = wire.CodeNotJSON
			}
			s.cfg.Logger.Debug("peer: invalid frame", "peer", s.info.Address, "err", err)
			s.sendError(e, code, err.Error())
			continue
		}
		if quit := s.dispatch(e); quit {
			return
		}
	}
}

// dispatch handles one frame from the peer. It reports whether the peer
// quit.
func (s *Session) dispatch(e wire.Envelope) (quit bool) {
	prevErr := s.peerErr
	s.peerErr = nil
	switch {
	case e.Name == wire.NameQuit:
		q := wire.DecodeQuit(e)
		err := fmt.Errorf("%w: %q", ErrPeerQuit, q.Reason)
		if prevErr != nil {
			// The peer said why it quits: error, then quit.
			prevErr.Err = err
			err = prevErr
		}
		s.shutdown(err)
		return true
	case s.ours(e.RID):
		s.mu.Lock()
		reply := s.pending[e.RID]
		delete(s.pending, e.RID)
		s.mu.Unlock()
		if reply == nil {
			s.cfg.Logger.Debug("peer: reply to no call", "peer", s.info.Address, "name", e.Name, "rid", e.RID)
			return false
		}
		reply <- e // buffered; the only send, as the entry is gone
	case e.Name == wire.NamePing:
		b, _ := wire.AppendFrame(nil, wire.NamePong, e.RID, nil)
		s.enqueue(wire.NamePong, b) // if the queue is full, the peer is not reading
	case e.Name == wire.NamePong || e.Name == wire.NameIDOK:
	case e.Name == wire.NameHello || e.Name == wire.NameID:
		s.sendError(e, wire.CodeAlreadyIdentified, "")
	case e.Name == wire.NameError:
		we, _ := wire.DecodeError(e)
		s.peerErr = &wire.ProtocolError{Code: we.Code, Text: we.Text, Name: we.Name, Remote: true}
		if s.cfg.Handler != nil {
			s.cfg.Handler(s, e)
		} else {
			s.cfg.Logger.Debug("peer: error frame", "peer", s.info.Address, "err", s.peerErr)
		}
	case s.cfg.Handler != nil:
		s.cfg.Handler(s, e)
	default:
		s.sendError(e, wire.CodeUnknownCommand, "")
	}
	return false
}

// sendError queues an error frame about e, dropping it if the queue is
// full.
func (s *Session) sendError(e wire.Envelope, code wire.Code, text string) {
	b, _ := wire.AppendFrame(nil, wire.NameError, e.RID, wire.NewError(code, e.Name, text))
	s.enqueue(wire.NameError, b)
}

// fail closes the session because the peer broke the protocol, telling it
// why.
func (s *Session) fail(code wire.Code, name, text string, cause error) {
	pe := &wire.ProtocolError{Code: code, Text: text, Name: name, Err: cause}
	s.cfg.Logger.Debug("peer: closing session", "peer", s.info.Address, "err", pe)
	s.shutdown(pe, finalFrames(code, name, 0, text)...)
}

// writeLoop writes queued frames, batching what is queued into one flush,
// and pings the peer when it has been silent for PingInterval. When the
// session closes it sends what is left and the final frames, then shuts
// down the writing side of the connection.
func (s *Session) writeLoop(done chan<- struct{}) {
	defer close(done)
	ping := time.NewTimer(s.cfg.PingInterval)
	defer ping.Stop()
	pingFrame, _ := wire.AppendFrame(nil, wire.NamePing, 0, nil)
	for {
		select {
		case b := <-s.out:
			bw := getWriter(s.conn)
			s.setWriteDeadline()
			err := s.write(bw, b)
			for more := true; more && err == nil; {
				select {
				case b := <-s.out:
					err = s.write(bw, b)
				default:
					more = false
				}
			}
			if err == nil {
				err = bw.Flush()
			}
			putWriter(bw)
			if err != nil {
				s.writeFailed(err)
				return
			}
		case <-ping.C:
			next := s.cfg.PingInterval
			if idle := time.Since(time.Unix(0, s.lastSeen.Load())); idle < next {
				next -= idle
			} else {
				s.setWriteDeadline()
				s.framesOut.Add(1)
				if _, err := s.conn.Write(pingFrame); err != nil {
					s.writeFailed(err)
					return
				}
			}
			ping.Reset(next)
		case <-s.closing:
			s.finish(nil)
			return
		}
	}
}

// writeFailed closes the session after a failed write.
func (s *Session) writeFailed(err error) {
	s.shutdown(fmt.Errorf("peer: write to %s: %w", s.info.Address, err))
	s.finish(err)
}

// Write buffers are shared: a session holds one only while it writes.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// write writes one queued frame to bw.
func (s *Session) write(bw *bufio.Writer, b []byte) error {
	s.outBytes.Add(-int64(len(b)))
	s.framesOut.Add(1)
	_, err := bw.Write(b)
	return err
}

// finish sends what is queued and the final frames, unless writing has
// failed (err), then shuts down the writing side of the connection, so
// that the peer reads to the end and closes.
func (s *Session) finish(err error) {
	if err == nil {
		bw := getWriter(s.conn)
		for more := true; more && err == nil; {
			select {
			case b := <-s.out:
				err = s.write(bw, b)
			default:
				more = false
			}
		}
		s.mu.Lock()
		final := s.final
		s.mu.Unlock()
		for _, b := range final {
			if err == nil {
				_, err = bw.Write(b)
				s.framesOut.Add(1)
			}
		}
		if err == nil {
			bw.Flush()
		}
		putWriter(bw)
	}
	if cw, ok := s.conn.NetConn().(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
