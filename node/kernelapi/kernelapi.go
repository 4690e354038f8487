// Package kernelapi is the kernel's contract on the router: the requests
// it serves, the events it publishes and the frames it hands to the
// subsystems that registered for them. A subsystem imports this package,
// never the kernel itself, and never holds a peer session.
//
// A subsystem that serves a message of the peer protocol registers for its
// name with a HandleRequest. The kernel then sends it each such frame as a
// Frame (a one-way router message whose context ends with the session),
// and the subsystem answers with a ReplyRequest or an ErrorRequest naming
// the sender and the frame's rid.
package kernelapi

import (
	"context"
	"errors"
	"net"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Endpoint is the kernel's router id.
const Endpoint = "kernel"

// Topics the kernel publishes on the router.
const (
	TopicPeerUp   = "peer.up"   // event: PeerEvent
	TopicPeerDown = "peer.down" // event: PeerEvent
)

// PeerInfo describes a peer of a session, as its handshake proved it.
type PeerInfo struct {
	// Address is the peer's address, from its TLS certificate.
	Address identity.Address
	// Hello and ID are what the peer sent.
	Hello wire.Hello
	ID    wire.ID
	// RemoteAddr is the peer's network address.
	RemoteAddr net.Addr
	// Inbound is set when the peer dialled this node.
	Inbound bool
}

// PeerEvent announces a session that began or ended.
type PeerEvent struct {
	PeerInfo
}

// A Frame is a frame of the peer protocol that a subsystem registered for
// (see HandleRequest), with the peer that sent it.
type Frame struct {
	From     identity.Address
	Remote   net.Addr // the peer's network address
	Envelope wire.Envelope
}

// Requests the kernel serves.
type (
	// HandleRequest registers the calling endpoint as the handler of the
	// frames with these names. The reply is nil, or an error wrapping
	// ErrNameTaken if another live endpoint holds a name (none is taken
	// then). An endpoint that registers again (after a restart, under the
	// same id) takes its names back.
	HandleRequest struct{ Names []string }

	// PeersRequest asks for the sessions and traffic, for `info`; the
	// reply is a Peers.
	PeersRequest struct{}
	// SessionsRequest asks for the peers of the sessions; the reply is a
	// []PeerInfo. A subsystem that follows the peer events asks it once it
	// has subscribed, so that it misses no session opened before.
	SessionsRequest struct{}
	// ConnectRequest asks the kernel to dial a peer ("host:port" or
	// "address@host:port") now; the reply is the session's PeerInfo (an
	// existing one, if the node has a session with the peer there).
	//
	// With an address, the host:port must lead to that peer: a session
	// that came from elsewhere (the peer dialled in) is checked by dialling
	// the host:port. A check that cannot tell (no free slot, no answer)
	// keeps the session it has, unless Verify: then the request fails
	// unless the peer answered there with its key.
	ConnectRequest struct {
		Target string
		Verify bool
	}
	// SessionRequest asks about the session with a peer; the reply is its
	// PeerInfo, or an error wrapping ErrNoSession.
	SessionRequest struct{ Address identity.Address }
	// PinRequest marks the sessions with a peer as in use by the calling
	// endpoint (Pinned), or no longer (not Pinned); the reply is nil. When
	// the node has no room for a new inbound session it may close an idle
	// one to make room, but never one that a registered endpoint pins. A
	// pin holds across sessions with the peer until it is removed or its
	// endpoint leaves the router: the DHT pins the nodes of its routing
	// table, the talk service the peers it talks with.
	PinRequest struct {
		Address identity.Address
		Pinned  bool
	}
	// CloseRequest closes the session with a peer, if there is one.
	CloseRequest struct {
		Address identity.Address
		Reason  string
	}
	// SendRequest sends a one-way frame to a peer with a session; the
	// reply is nil once it is queued.
	SendRequest struct {
		To   identity.Address
		Name string
		Data any
	}
	// ReplyRequest answers a request frame (RID) from a peer; the reply is
	// nil once the answer is queued.
	ReplyRequest struct {
		To   identity.Address
		RID  uint64
		Name string
		Data any
	}
	// ErrorRequest answers a frame from a peer with an error frame; the
	// reply is nil once it is queued.
	ErrorRequest struct {
		To   identity.Address
		RID  uint64
		Name string // the name of the frame refused
		Code wire.Code
		Text string
	}
	// CallRequest sends a request frame to a peer with a session and
	// waits for its answer; the reply is the answer's wire.Envelope, and
	// an error frame is an error (a *wire.ProtocolError).
	CallRequest struct {
		To   identity.Address
		Name string
		Data any
	}
)

// Errors of the kernel's requests.
var (
	// ErrNoSession is wrapped by the error of a request about a peer the
	// node has no session with.
	ErrNoSession = errors.New("no session with that peer")
	// ErrNameTaken is wrapped by the error of a HandleRequest for a frame
	// name another endpoint serves.
	ErrNameTaken = errors.New("frame name already has a handler")
	// ErrBusy is wrapped by the error of a request that failed for this
	// node's own limits (no free outbound slot, a full send queue, too many
	// calls in flight): it says nothing about the peer.
	ErrBusy = errors.New("kernel busy")
)

// Peers describes the kernel's sessions and traffic.
type Peers struct {
	Listen string `json:"listen"` // the address the kernel listens on

	Inbound  int `json:"inbound"`
	Outbound int `json:"outbound"`
	// TrafficIn and TrafficOut count the bytes, TLS included, of every
	// peer connection since the node was made: sessions, and handshakes
	// that failed or were refused. Connections closed before TLS count
	// nothing.
	TrafficIn   uint64            `json:"traffic_in"`
	TrafficOut  uint64            `json:"traffic_out"`
	Connections []node.ConnInfo   `json:"connections"`
	Targets     []node.TargetInfo `json:"targets"` // the configured peers (--connect)
}

// Handle registers ep as the handler of the frames named names (a
// HandleRequest), waiting for the kernel to register on the router if it
// has not yet (as at start).
func Handle(ctx context.Context, r *router.Router, ep *router.Endpoint, names ...string) error {
	if err := r.Await(ctx, Endpoint); err != nil {
		return err
	}
	_, err := ep.Call(ctx, Endpoint, HandleRequest{Names: names})
	return err
}

// Reply answers the request frame f with a frame name carrying data (a
// ReplyRequest).
func Reply(ctx context.Context, ep *router.Endpoint, f Frame, name string, data any) error {
	_, err := ep.Call(ctx, Endpoint, ReplyRequest{To: f.From, RID: f.Envelope.RID, Name: name, Data: data})
	return err
}

// Refuse answers the frame f with an error frame (an ErrorRequest).
func Refuse(ctx context.Context, ep *router.Endpoint, f Frame, code wire.Code, text string) error {
	_, err := ep.Call(ctx, Endpoint, ErrorRequest{To: f.From, RID: f.Envelope.RID, Name: f.Envelope.Name, Code: code, Text: text})
	return err
}
