// Package peer runs one peer session over a TLS connection: the handshake
// (hello, id, id_ok), then the exchange of frames until either side quits.
//
// Handshake returns a Session once both sides have identified; Run then
// serves it: frames from the peer go to the Config's Handler, except the
// ones the session answers itself (ping, a repeated hello or id) and the
// replies to the session's own Calls. Send, Reply and Call queue frames
// for a writer goroutine and never block on the network.
//
// Nothing a peer sends can make a session hold more than a fixed amount of
// memory: frames are limited in size, the outbound queue and the table of
// calls in flight are bounded, and every read and write has a deadline.
//
// Request ids are split between the two sides so that a frame's rid tells
// a reply from a request: the side whose address is the lesser (as 32
// bytes, compared in order) numbers its requests 1, 3, 5, …; the other
// 2, 4, 6, …. A frame carrying a rid of the receiver's own parity is a reply
// to the receiver; one with the sender's parity is a request.
package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 120 * time.Second // a session is pinged at half of it
	DefaultWriteTimeout     = 30 * time.Second
	DefaultCallTimeout      = 30 * time.Second
	DefaultCloseTimeout     = 2 * time.Second
	DefaultSendQueue        = 256
	DefaultSendQueueBytes   = 4 << 20
	DefaultMaxPendingCalls  = 256
	DefaultSoftware         = "phpchat-node"
)

// Config configures a session. Only Identity is required.
type Config struct {
	// Identity is the local node.
	Identity *identity.Identity
	// Software goes in hello, as "phpchat-node/0.1.0".
	Software string
	// ListenPort, Capabilities and Hashcash go in id.
	ListenPort   int
	Capabilities []string
	Hashcash     wire.HashcashPolicy

	// Handler receives the frames the session does not handle itself. If
	// nil, requests are answered with error 9020 (unknown command).
	Handler Handler
	// Logger receives debug records of protocol errors; nil discards them.
	Logger *slog.Logger

	// HandshakeTimeout bounds the whole handshake, TLS included.
	HandshakeTimeout time.Duration
	// PingInterval is how long the peer may be silent before it is sent a
	// ping; zero means half of IdleTimeout.
	PingInterval time.Duration
	// IdleTimeout is how long the peer may be silent before the session is
	// closed with error 9090 (timeout). It should exceed PingInterval by
	// more than a round trip.
	IdleTimeout time.Duration
	// WriteTimeout bounds a write to the network; a peer that does not
	// read for that long is dropped.
	WriteTimeout time.Duration
	// CallTimeout bounds a Call whose context has no deadline.
	CallTimeout time.Duration
	// CloseTimeout bounds closing: sending the last frames and waiting for
	// the peer to close its side.
	CloseTimeout time.Duration
	// MaxFrameSize is the largest frame read or sent, the LF excluded.
	MaxFrameSize int
	// SendQueue and SendQueueBytes bound the outbound queue, in frames and
	// bytes. A frame is always taken into an empty queue.
	SendQueue      int
	SendQueueBytes int
	// MaxPendingCalls bounds the Calls in flight.
	MaxPendingCalls int
}

// A Handler receives a frame from the peer. It runs on the session's
// reading goroutine, so frames are handled one at a time, in order, and
// the session reads nothing more until it returns: it must not block, and
// must not Call on the same session (the reply could not be read). It may
// Send, Reply, SendError and Close.
//
// The handler gets requests (a rid of the peer's parity), one-way frames
// (no rid), and error frames that answer no Call of ours. It must never
// answer an error frame. A frame it does not know it answers with
// wire.CodeUnknownCommand.
type Handler func(s *Session, e wire.Envelope)

func (c Config) withDefaults() (Config, error) {
	if c.Identity == nil {
		return c, errors.New("peer: config has no identity")
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.PingInterval, c.IdleTimeout/2)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.CallTimeout, DefaultCallTimeout)
	set(&c.CloseTimeout, DefaultCloseTimeout)
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = wire.MaxFrameSize
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.MaxPendingCalls <= 0 {
		c.MaxPendingCalls = DefaultMaxPendingCalls
	}
	if c.Software == "" {
		c.Software = DefaultSoftware
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	id := c.id()
	if err := id.Validate(); err != nil {
		return c, fmt.Errorf("peer: config: %w", err)
	}
	if err := (&wire.Hello{Protocol: wire.ProtocolVersion, Software: c.Software}).Validate(); err != nil {
		return c, fmt.Errorf("peer: config: %w", err)
	}
	return c, nil
}

// id returns the id payload the config describes.
func (c *Config) id() wire.ID {
	return wire.ID{
		Address:      c.Identity.Address,
		Port:         c.ListenPort,
		Capabilities: c.Capabilities,
		Hashcash:     c.Hashcash,
	}
}

// Errors of sessions.
var (
	// ErrClosed reports a session closed by this side.
	ErrClosed = errors.New("peer: session closed")
	// ErrPeerQuit reports a session the peer ended with quit.
	ErrPeerQuit = errors.New("peer: peer quit")
	// ErrQueueFull reports a frame refused because the outbound queue is
	// full: the peer reads too slowly, or the caller sends too fast.
	ErrQueueFull = errors.New("peer: send queue full")
	// ErrTooManyCalls reports a Call refused because MaxPendingCalls are in
	// flight.
	ErrTooManyCalls = errors.New("peer: too many calls in flight")
)
