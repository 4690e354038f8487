// Package msgapi is the offline-message service's contract on the router:
// the requests it serves, their replies and the events it publishes.
package msgapi

import (
	"errors"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Endpoint is the service's router id.
const Endpoint = "messages"

// TopicEvents is the router topic of the service's Events.
const TopicEvents = "messages.events"

// States of an outgoing message.
const (
	StateQueued    = "queued"    // durable in the outbox, waiting for its turn
	StateMinting   = "minting"   // its stamp is being minted
	StateSent      = "sent"      // handed to the recipient or to relays
	StateDelivered = "delivered" // the recipient's receipt arrived
	StateExpired   = "expired"   // no receipt before the message expired
	StateRefused   = "refused"   // refused for good; Reason says why
)

// Requests the service serves.
type (
	// SendRequest queues a message: Content is an RFC 5322 message. The
	// reply is the message's id, once the message is durable in the
	// outbox.
	SendRequest struct {
		To      identity.Address
		Content []byte
	}
	// SendAllRequest queues one copy of a message per recipient, all in
	// one durable write or none: the reply is their ids, in the order of
	// To, once all are durable.
	SendAllRequest struct {
		To      []identity.Address
		Content []byte
	}
	// ListRequest asks for the inbox and outbox; the reply is a
	// []Summary, newest last.
	ListRequest struct{}
	// ReadRequest asks for one message by id (or a unique prefix of it);
	// the reply is a Message. An inbox message is marked read.
	ReadRequest struct{ ID string }
	// DeleteRequest deletes one message by id (or a unique prefix).
	DeleteRequest struct{ ID string }
	// StatusRequest asks for the figures of `info`; the reply is a Status.
	StatusRequest struct{}
)

// Summary describes a message in a listing.
type Summary struct {
	ID      string    `json:"id"`
	Box     string    `json:"box"`  // "inbox" or "outbox"
	Peer    string    `json:"peer"` // the sender (inbox) or recipient (outbox)
	Subject string    `json:"subject"`
	Date    time.Time `json:"date"`
	Size    int       `json:"size"`
	Read    bool      `json:"read,omitempty"`  // inbox
	State   string    `json:"state,omitempty"` // outbox
	Relays  int       `json:"relays,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Message is one message with its content.
type Message struct {
	Summary
	Content []byte `json:"content"`
}

// Status is the service's part of `info`.
type Status struct {
	InboxTotal      int   `json:"inbox_total"`
	InboxUnread     int   `json:"inbox_unread"`
	OutboxQueued    int   `json:"outbox_queued"`
	OutboxDelivered int   `json:"outbox_delivered"`
	RelayStored     int   `json:"relay_stored"`
	RelayBytes      int64 `json:"relay_bytes"`
}

// Kinds of Event.
const (
	KindMail  = "mail"  // a message arrived: ID, From, Subject
	KindState = "state" // an outgoing message changed state: ID, State
)

// An Event is published on TopicEvents.
type Event struct {
	Kind    string `json:"kind"`
	ID      string `json:"id"`
	From    string `json:"from,omitempty"`
	Subject string `json:"subject,omitempty"`
	State   string `json:"state,omitempty"`
}

// Errors of the requests.
var (
	ErrNoMessage = errors.New("no such message")
	ErrAmbiguous = errors.New("message id prefix matches several messages")
	ErrTooLarge  = errors.New("message larger than max-message-size")
	ErrBadInput  = errors.New("bad input")
)
