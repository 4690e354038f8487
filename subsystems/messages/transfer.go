package messages

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Message names of the offline messages (docs/protocol.md, section 8).
const (
	NameMsg         = "msg"          // a part of an envelope; answered by msg_response
	NameMsgResponse = "msg_response" // data: Response
	NameFetch       = "msg_fetch"    // the recipient asks for what waits for it; answered by msg_fetched
	NameFetched     = "msg_fetched"  // data: Fetched
	NameDelete      = "msg_delete"   // data: Delete; answered by msg_deleted
	NameDeleted     = "msg_deleted"  // data: Deleted
)

// Names are the message names the service registers for.
var Names = []string{NameMsg, NameFetch, NameDelete}

// Purpose is the hashcash purpose of msg in a node's policy: the bits an
// envelope of up to 64 KiB must carry.
const Purpose = NameMsg

// PartSize is the most envelope bytes one msg frame carries: with base64
// and the frame's JSON, a part fits in the 1 MiB frame every node accepts.
const PartSize = 512 << 10

// Part is the data of msg: one part of an envelope. An envelope of up to
// PartSize bytes travels in one part. The sender sends the next part once
// the receiver has answered the last one ("continue"): that is the flow
// control, and other frames (pings, talk lines) pass between parts.
type Part struct {
	ID    string `json:"id"`    // the envelope's id, 32 hex digits
	Part  int    `json:"part"`  // 0, 1, …
	Parts int    `json:"parts"` // how many
	Size  int    `json:"size"`  // the whole envelope's bytes
	Data  []byte `json:"data"`  // base64 in JSON
}

// Statuses of a msg_response.
const (
	StatusContinue  = "continue"  // part taken: send the next
	StatusAccepted  = "accepted"  // the envelope is durable here
	StatusDuplicate = "duplicate" // this node has it already
	StatusRefused   = "refused"   // see Code and Reason
)

// Reason codes of a refused envelope.
const (
	CodeNoStamp     = "stamp_missing"
	CodeUnderWeight = "stamp_under_weight"
	CodeSpent       = "stamp_spent"
	CodeExpired     = "expired" // or from the future
	CodeFormat      = "bad_format"
	CodeTooLarge    = "too_large"
	CodeOverQuota   = "over_quota"
	CodeConflict    = "id_conflict" // another envelope has this id
	CodeNotNear     = "not_near"    // a relay far from the recipient keeps no copy
)

// Response is the data of msg_response.
type Response struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Fetched is the data of msg_fetched: how many envelopes the relay holds
// for the asking node; it pushes them next, as msg requests.
type Fetched struct {
	Count int `json:"count"`
}

// Delete is the data of msg_delete: the deletion secret of an envelope,
// which only its recipient learns. A relay that holds the envelope drops
// it if the secret matches.
type Delete struct {
	ID     string `json:"id"`
	Secret []byte `json:"secret"` // 32 bytes
}

// Deleted is the data of msg_deleted.
type Deleted struct {
	Deleted bool `json:"deleted"`
}

// push sends the envelope env (id) to the peer to, part by part, and
// returns the peer's answer to the last part.
func push(ctx context.Context, ep *router.Endpoint, to identity.Address, id string, env []byte) (Response, error) {
	parts := (len(env) + PartSize - 1) / PartSize
	for i := 0; i < parts; i++ {
		chunk := env[i*PartSize : min((i+1)*PartSize, len(env))]
		e, err := router.CallAs[wire.Envelope](ctx, ep, kernelapi.Endpoint, kernelapi.CallRequest{
			To: to, Name: NameMsg, Data: Part{ID: id, Part: i, Parts: parts, Size: len(env), Data: chunk},
		})
		if err != nil {
			return Response{}, err
		}
		var r Response
		if err := e.Decode(&r); err != nil {
			return r, fmt.Errorf("msg_response from %s: %w", to, err)
		}
		if r.ID != id {
			return r, fmt.Errorf("msg_response from %s answers %q, not %q", to, r.ID, id)
		}
		last := i == parts-1
		switch {
		case last && r.Status == StatusContinue:
			return r, fmt.Errorf("msg_response from %s: continue after the last part", to)
		case last || r.Status != StatusContinue:
			return r, nil // the answer; or refused, or a duplicate, before the end
		}
	}
	return Response{}, fmt.Errorf("msg to %s: an empty envelope", to)
}

// assembler puts together the envelopes arriving in parts, within limits:
// at most maxPending envelopes in parts per peer, each at most maxSize
// bytes, each given up if its next part takes longer than partTimeout.
type assembler struct {
	maxSize    int
	maxPending int

	mu      sync.Mutex
	pending map[pendingKey]*pending
	held    int // bytes in pending
}

type pendingKey struct {
	from identity.Address
	id   string
}

type pending struct {
	buf  []byte
	size int // the whole envelope's, as its first part said
	next int
	last time.Time
}

// maxAssembling bounds the bytes of all envelopes being put together at
// once, from all peers.
const maxAssembling = 64 << 20

// partTimeout is how long a part may take after the one before it.
const partTimeout = 2 * time.Minute

func newAssembler(maxSize, maxPending int) *assembler {
	return &assembler{maxSize: maxSize, maxPending: maxPending, pending: make(map[pendingKey]*pending)}
}

// errPart is a part that does not fit: its text is the reason.
type errPart struct{ code, reason string }

func (e *errPart) Error() string { return e.reason }

// add takes part p from a peer. It returns the whole envelope once the
// last part is in, nil before.
func (a *assembler) add(from identity.Address, p Part, now time.Time) ([]byte, error) {
	switch {
	case p.Parts < 1 || p.Part < 0 || p.Part >= p.Parts || p.Size < 1:
		return nil, &errPart{CodeFormat, "bad part numbers"}
	case p.Size > a.maxSize:
		return nil, &errPart{CodeTooLarge, fmt.Sprintf("envelope of %d bytes, at most %d", p.Size, a.maxSize)}
	case p.Parts != (p.Size+PartSize-1)/PartSize:
		return nil, &errPart{CodeFormat, "part count does not fit the size"}
	case len(p.Data) != min(PartSize, p.Size-p.Part*PartSize):
		return nil, &errPart{CodeFormat, "part of the wrong length"}
	}
	if p.Parts == 1 {
		return p.Data, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	k := pendingKey{from, p.ID}
	pd := a.pending[k]
	if p.Part == 0 {
		if pd == nil && a.count(from) >= a.maxPending {
			return nil, &errPart{CodeOverQuota, "too many envelopes in parts at once"}
		}
		a.drop(k)
		pd = &pending{size: p.Size}
		a.pending[k] = pd
	}
	if pd == nil || p.Part != pd.next || pd.size != p.Size {
		a.drop(k)
		return nil, &errPart{CodeFormat, "part out of order"}
	}
	// Memory is taken as parts arrive, within one budget for all peers:
	// a claimed size reserves nothing.
	if a.held+len(p.Data) > maxAssembling {
		a.drop(k)
		return nil, &errPart{CodeOverQuota, "too many envelopes in parts at once: try again later"}
	}
	a.held += len(p.Data)
	pd.buf = append(pd.buf, p.Data...)
	pd.next++
	pd.last = now
	if pd.next < p.Parts {
		return nil, nil
	}
	a.drop(k)
	return pd.buf, nil
}

// drop forgets the envelope in parts k, if any. a.mu is held.
func (a *assembler) drop(k pendingKey) {
	if pd, ok := a.pending[k]; ok {
		a.held -= len(pd.buf)
		delete(a.pending, k)
	}
}

// count returns the envelopes in parts from a peer. a.mu is held.
func (a *assembler) count(from identity.Address) int {
	n := 0
	for k := range a.pending {
		if k.from == from {
			n++
		}
	}
	return n
}

// expire drops envelopes whose next part is late. a.mu is held.
func (a *assembler) expire(now time.Time) {
	for k, pd := range a.pending {
		if now.Sub(pd.last) > partTimeout {
			a.drop(k)
		}
	}
}

// forget drops the parts from a peer whose session ended.
func (a *assembler) forget(from identity.Address) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.pending {
		if k.from == from {
			a.drop(k)
		}
	}
}
