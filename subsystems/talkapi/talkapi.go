// Package talkapi is the talk service's contract on the router: the
// requests it serves, the events it publishes for attached consoles, and
// the data of the consoles' control-socket functions.
package talkapi

import (
	"errors"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Endpoint is the service's router id.
const Endpoint = "talk"

// TopicEvents is the router topic of the Events for attached consoles.
const TopicEvents = "talk.events"

// Statuses of a talk_response.
const (
	StatusWaiting  = 0 // the request reached the user, who has not answered yet
	StatusAccepted = 1
	StatusDeclined = 2
	StatusTimedOut = 3 // the user did not answer in time
	StatusNoUI     = 4 // no console is attached to the callee's node
)

// EventFrame is the name of the control-socket frames that carry Events
// to an attached console (rid 0).
const EventFrame = "talk.event"

// Data of the console's control-socket functions.
type (
	// ConnectArgs is the data of "talk.connect".
	ConnectArgs struct {
		Target string `json:"target"` // host:port or address@host:port
	}
	// PeerArgs is the data of "talk.request".
	PeerArgs struct {
		Peer string `json:"peer"` // an address, or a nickname of the address book
	}
	// TalkArgs is the data of "talk.accept", "talk.decline" and "talk.close".
	TalkArgs struct {
		Talk int `json:"talk"`
	}
	// SendArgs is the data of "talk.send".
	SendArgs struct {
		Talk int    `json:"talk"`
		Text string `json:"text"`
	}
	// NickArgs is the data of "nick".
	NickArgs struct {
		Nickname string `json:"nickname,omitempty"`
	}
)

// Kinds of Event.
const (
	KindAttached      = "attached"       // first event of a console: State
	KindCalling       = "calling"        // an outgoing request is being made
	KindRinging       = "ringing"        // the callee's user has the request
	KindResponse      = "response"       // the callee's answer other than accepted: Status 2, 3 or 4
	KindFailed        = "failed"         // an outgoing request failed: Text
	KindRequest       = "request"        // an incoming request, to accept or decline
	KindRequestClosed = "request_closed" // an incoming request ended unanswered: Status 2 or 3, or Text
	KindOpen          = "open"           // a talk began
	KindMsg           = "msg"            // a line of a talk
	KindNick          = "nick"           // a nickname changed: the peer's (Talk set) or the user's
	KindClosed        = "closed"         // a talk ended
	KindDropped       = "dropped"        // Count events were lost while no console was attached
)

// An Event is something the users at the attached consoles should see.
type Event struct {
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	Talk     int       `json:"talk,omitempty"` // the talk's (or request's) number
	Peer     string    `json:"peer,omitempty"` // the peer's address
	Nickname string    `json:"nickname,omitempty"`
	Text     string    `json:"text,omitempty"`
	Status   int       `json:"status,omitempty"`
	// Mine marks a line the user wrote (at any console).
	Mine bool `json:"mine,omitempty"`
	// Outgoing marks an open talk this node asked for.
	Outgoing bool `json:"outgoing,omitempty"`
	// ByPeer marks a talk or request the peer ended.
	ByPeer      bool      `json:"by_peer,omitempty"`
	OldNickname string    `json:"old_nickname,omitempty"`
	Remote      string    `json:"remote,omitempty"` // the peer's network address
	Expires     time.Time `json:"expires,omitzero"`
	// Contact is the peer's nickname in the address book, if it is
	// there; otherwise FirstTime is set and both fingerprints are given.
	Contact         string `json:"contact,omitempty"`
	FirstTime       bool   `json:"first_time,omitempty"`
	Fingerprint     string `json:"fingerprint,omitempty"`
	PeerFingerprint string `json:"peer_fingerprint,omitempty"`
	Count           int    `json:"count,omitempty"`
	State           *State `json:"state,omitempty"`
}

// TalkInfo describes a talk or a request.
type TalkInfo struct {
	Talk     int       `json:"talk"`
	Peer     string    `json:"peer"`
	Nickname string    `json:"nickname"`
	State    string    `json:"state"` // "calling", "ringing" or "open"
	Outgoing bool      `json:"outgoing"`
	Remote   string    `json:"remote,omitempty"`
	Started  time.Time `json:"started"`
	Expires  time.Time `json:"expires,omitzero"`
}

// State is what a console needs when it attaches.
type State struct {
	Address     string     `json:"address"`
	Fingerprint string     `json:"fingerprint"`
	Nickname    string     `json:"nickname"`
	Talks       []TalkInfo `json:"talks"`
}

// Requests the service serves on the router.
type (
	// AttachRequest asks for what a console needs when it attaches: the
	// reply is an Attached, whose backlog is then cleared. A console is
	// attached while it is subscribed to TopicEvents: subscribe first,
	// then ask, and unsubscribe to detach.
	AttachRequest struct{}
	// StartRequest asks Peer (with a session) to talk; the reply is the
	// new talk's TalkInfo, and the outcome comes as events.
	StartRequest struct{ Peer identity.Address }
	// AcceptRequest accepts the incoming request Talk; the reply is its
	// TalkInfo.
	AcceptRequest struct{ Talk int }
	// DeclineRequest declines the incoming request Talk.
	DeclineRequest struct{ Talk int }
	// SendRequest sends a line on the open talk Talk.
	SendRequest struct {
		Talk int
		Text string
	}
	// CloseRequest ends the talk Talk, or withdraws the outgoing request.
	CloseRequest struct{ Talk int }
	// NickRequest sets the user's nickname, or asks for it if empty; the
	// reply is the nickname.
	NickRequest struct{ Nickname string }
	// ListRequest asks for the talks and requests: []TalkInfo.
	ListRequest struct{}
	// StatusRequest asks for the figures of `info`: a Status.
	StatusRequest struct{}
)

// Attached is the reply to an AttachRequest.
type Attached struct {
	State   State
	Backlog []Event // events kept while no console was attached
}

// Status is the service's part of `info`.
type Status struct {
	Nickname string
	// Consoles is the number of consoles attached.
	Consoles int
	// Letters maps a peer's address to its status letter in `info -c`:
	// "T" talking, "t" a request pending.
	Letters map[string]string
}

// Errors of the router requests.
var (
	ErrNoTalk   = errors.New("no such talk")
	ErrBadInput = errors.New("bad input")
)
