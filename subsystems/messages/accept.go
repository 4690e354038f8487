package messages

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// maxSkew is how far in the future an envelope's creation time may be.
const maxSkew = 10 * time.Minute

// frame serves a frame from a peer.
func (s *Service) frame(ctx context.Context, f kernelapi.Frame) {
	switch f.Envelope.Name {
	case NameMsg:
		s.msgFrame(ctx, f)
	case NameFetch:
		s.fetchFrame(ctx, f)
	case NameDelete:
		s.deleteFrame(ctx, f)
	}
}

// msgFrame takes a part of an envelope, and the envelope once whole.
func (s *Service) msgFrame(ctx context.Context, f kernelapi.Frame) {
	if f.Envelope.RID == 0 {
		s.refuse(ctx, f, wire.CodeInvalidData, "msg needs a rid")
		return
	}
	var p Part
	if err := f.Envelope.Decode(&p); err != nil {
		s.refuse(ctx, f, wire.CodeInvalidData, err.Error())
		return
	}
	if _, err := parseID(p.ID); err != nil {
		s.refuse(ctx, f, wire.CodeInvalidData, err.Error())
		return
	}
	if p.Part == 0 && p.Parts > 1 && s.holds(p.Data) {
		// A copy this relay holds (or held and deleted): the other parts
		// need not travel.
		s.answer(ctx, f, Response{ID: p.ID, Status: StatusDuplicate})
		return
	}
	raw, err := s.parts.add(f.From, p, s.cfg.Now())
	var perr *errPart
	switch {
	case errors.As(err, &perr):
		s.answer(ctx, f, Response{ID: p.ID, Status: StatusRefused, Code: perr.code, Reason: perr.reason})
		return
	case raw == nil:
		s.answer(ctx, f, Response{ID: p.ID, Status: StatusContinue})
		return
	}
	r := s.accept(ctx, f.From, raw, p.ID)
	r.ID = p.ID
	s.answer(ctx, f, r)
}

// holds reports whether the envelope that begins with the first part
// first is for another node and held by the relay store already.
func (s *Service) holds(first []byte) bool {
	const idAt, rcptAt, secretAt = 5, 21, 69
	if len(first) < envelope.HeaderSize {
		return false
	}
	var id [16]byte
	copy(id[:], first[idAt:])
	if identity.Address(first[rcptAt:rcptAt+32]) == s.cfg.Identity.Address {
		return false // the inbox must open it to acknowledge it
	}
	held, err := s.relay.Get(id)
	// Only the same envelope: another under the same id is refused whole.
	return err == nil && bytes.Equal(held.SecretHash[:], first[secretAt:secretAt+32])
}

// accept takes a whole envelope from the peer from, which its parts named
// wantID: into the inbox if it is for this node, else into the relay
// store. It answers accepted only once the envelope is durable.
func (s *Service) accept(ctx context.Context, from identity.Address, raw []byte, wantID string) Response {
	env, err := envelope.Parse(raw, s.maxEnvelope())
	switch {
	case errors.Is(err, envelope.ErrTooLarge):
		return Response{Status: StatusRefused, Code: CodeTooLarge, Reason: err.Error()}
	case err != nil:
		return Response{Status: StatusRefused, Code: CodeFormat, Reason: err.Error()}
	}
	id := hex.EncodeToString(env.ID[:])
	if id != wantID {
		return Response{Status: StatusRefused, Code: CodeFormat, Reason: "the envelope's id is not the one its parts named"}
	}
	now := s.cfg.Now()
	switch {
	case !env.Expires.After(now):
		return Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: "the envelope has expired"}
	case env.Created.After(now.Add(maxSkew)):
		return Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: "the envelope was made in the future"}
	case env.Expires.Sub(env.Created) > s.cfg.Expiry+24*time.Hour:
		return Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: "the envelope lives longer than this node keeps one"}
	}
	if env.Recipient == s.cfg.Identity.Address {
		return s.receive(ctx, from, env, id)
	}
	return s.hold(ctx, env, raw, id)
}

// verifyStamp checks env's stamp without spending it: present, for the
// envelope's content hash, of the weight its size needs, in date, and not
// spent on this node before. It returns when the stamp expires, or the
// refusal.
func (s *Service) verifyStamp(env *envelope.Envelope, id string) (time.Time, Response, bool) {
	if env.Stamp == "" {
		return time.Time{}, Response{ID: id, Status: StatusRefused, Code: CodeNoStamp, Reason: "the envelope carries no stamp"}, false
	}
	p := s.cfg.Stamps.Policy
	p.MinBits, p.Resource = envelope.StampBits(env.BodySize(), s.cfg.Bits), env.Resource()
	st, err := p.Verify(env.Stamp)
	var herr *hashcash.Error
	switch {
	case err == nil:
	case errors.As(err, &herr) && (herr.Reason == hashcash.ReasonExpired || herr.Reason == hashcash.ReasonFuture):
		return time.Time{}, Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: err.Error()}, false
	default:
		// Too few bits; or malformed, for another resource, or its hash
		// short of its claim: not worth the envelope either way.
		return time.Time{}, Response{ID: id, Status: StatusRefused, Code: CodeUnderWeight, Reason: err.Error()}, false
	}
	spent, err := s.cfg.Stamps.Spent.Spent(env.Stamp)
	switch {
	case err != nil:
		s.log.Warn("messages: spent stamps not read", "err", err)
		return time.Time{}, Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "stamp not checked"}, false
	case spent:
		return time.Time{}, Response{ID: id, Status: StatusRefused, Code: CodeSpent, Reason: "the stamp was spent before"}, false
	}
	exp := p.ExpiresAt(st)
	if exp.IsZero() {
		exp = env.Expires
	}
	return exp, Response{}, true
}

// spend records the stamp of an envelope this node took as spent.
func (s *Service) spend(stamp string, exp time.Time) {
	err := s.cfg.Stamps.Spent.Spend(stamp, exp)
	if err != nil && !errors.Is(err, store.ErrSpent) {
		s.log.Warn("messages: stamp not recorded as spent", "err", err)
	}
}

// near reports whether this node is among the nodes nearest to the
// recipient that its routing table knows (twice Replicas, as the sender's
// view of the network may differ from this node's): a relay keeps copies
// only there, so that one stamp does not buy a copy on every node. Without
// an answer from the DHT, it takes the copy.
func (s *Service) near(ctx context.Context, to identity.Address) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	near, err := router.CallAs[bool](ctx, s.ep, dhtapi.Endpoint, dhtapi.NearRequest{Target: to.ID(), Rank: 2 * s.cfg.Replicas})
	return err != nil || near
}

// hold stores an envelope for another node. The stamp is not recorded as
// spent: it pays for this envelope only (its resource is the content
// hash), and the relay store refuses the envelope as a duplicate for as
// long as it is valid, held or deleted. A refusal for quota therefore
// costs the sender nothing: it may try again later.
func (s *Service) hold(ctx context.Context, env *envelope.Envelope, raw []byte, id string) Response {
	if held, err := s.relay.Get(env.ID); err == nil {
		if held.SecretHash != env.SecretHash {
			// Someone squats the id: the real message must not look
			// placed, nor be dropped by the squatter's secret.
			return Response{ID: id, Status: StatusRefused, Code: CodeConflict, Reason: "another envelope has this id"}
		}
		return Response{ID: id, Status: StatusDuplicate}
	}
	if !s.near(ctx, env.Recipient) {
		return Response{ID: id, Status: StatusRefused, Code: CodeNotNear, Reason: "this node is not among the nodes nearest the recipient"}
	}
	if _, r, ok := s.verifyStamp(env, id); !ok {
		return r
	}
	err := s.relay.Put(ctx, store.RelayEnvelope{
		ID: env.ID, Recipient: env.Recipient, SecretHash: env.SecretHash, Expires: env.Expires, Envelope: raw,
	})
	switch {
	case err == nil:
	case errors.Is(err, store.ErrDuplicate):
		return Response{ID: id, Status: StatusDuplicate}
	case errors.Is(err, store.ErrOverQuota), errors.Is(err, store.ErrLowSpace):
		return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: err.Error()}
	case errors.Is(err, store.ErrExpired):
		return Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: err.Error()}
	default:
		s.log.Warn("messages: envelope not stored", "err", err)
		return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "not stored"}
	}
	if s.connected(env.Recipient) {
		s.pushFor(env.Recipient)
	}
	return Response{ID: id, Status: StatusAccepted}
}

// receive takes an envelope addressed to this node: a message goes to the
// inbox and is acknowledged with a receipt; a receipt marks the message
// it acknowledges delivered. Either way the relays holding copies are
// told the deletion secret.
func (s *Service) receive(ctx context.Context, from identity.Address, env *envelope.Envelope, id string) Response {
	l, err := envelope.Open(s.cfg.Identity, env)
	if err != nil {
		return Response{ID: id, Status: StatusRefused, Code: CodeFormat, Reason: err.Error()}
	}
	switch l.Kind {
	case envelope.KindMessage:
		return s.receiveMessage(from, env, l, id)
	case envelope.KindReceipt:
		return s.receiveReceipt(from, env, l, id)
	}
	return Response{ID: id, Status: StatusRefused, Code: CodeFormat, Reason: fmt.Sprintf("unknown kind %d", l.Kind)}
}

// receiveMessage puts a message in the inbox. A message new to this node
// is answered with a receipt and its deletion secret is shown to the
// relays; a duplicate gets a receipt only when its sender delivers it
// (it has not seen the receipt yet), and the secret goes to the relay
// that brought it.
func (s *Service) receiveMessage(from identity.Address, env *envelope.Envelope, l *envelope.Letter, id string) Response {
	if old, err := s.cfg.DB.Inbox().Get(env.ID); err == nil {
		if old.From != l.From.String() || old.SecretHash != env.SecretHash {
			// Another message under this id (sent first to squat it):
			// no receipt, and the secret of neither is shown.
			return Response{ID: id, Status: StatusRefused, Code: CodeConflict, Reason: "another message has this id"}
		}
		s.duplicate(from, l)
		return Response{ID: id, Status: StatusDuplicate}
	}
	exp, r, ok := s.verifyStamp(env, id)
	if !ok {
		return r
	}
	content := setFrom(l.Content, s.mailAddress(l.From))
	receipt, err := s.receipt(l)
	if err != nil {
		s.log.Warn("messages: receipt not made", "err", err)
		return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "not stored"}
	}
	// The message and its receipt, queued, in one durable write.
	_, err = s.cfg.DB.Inbox().AddWithReceipt(store.InMsg{
		ID: env.ID, From: l.From.String(), Subject: subject(content), Content: content,
		Received: s.cfg.Now(), Expires: env.Expires, SecretHash: env.SecretHash,
	}, receipt)
	switch {
	case errors.Is(err, store.ErrDuplicate):
		s.duplicate(from, l)
		return Response{ID: id, Status: StatusDuplicate}
	case err != nil:
		s.log.Warn("messages: message not stored", "err", err)
		return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "not stored"}
	}
	s.spend(env.Stamp, exp)
	s.cfg.Router.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindMail, ID: id, From: l.From.String(), Subject: subject(content)})
	s.wake() // the receipt
	d := deletion(l)
	s.background(func() { s.dropCopiesOf(s.ctx, from, l.From, d) })
	return Response{ID: id, Status: StatusAccepted}
}

// receiptEvery is how often at most a duplicate of a message is
// answered with a receipt: a sender that delivers again has not seen the
// last one, but each costs this node a stamp.
const receiptEvery = 10 * time.Minute

// duplicate acknowledges a message the inbox has already.
func (s *Service) duplicate(from identity.Address, l *envelope.Letter) {
	if from == l.From {
		if s.receiptDue(l.ID) {
			s.background(func() {
				if err := s.queueReceipt(l); err != nil {
					s.log.Warn("messages: receipt not queued", "err", err)
				}
			})
		}
		return
	}
	d := deletion(l) // not the letter: it may be megabytes
	s.tryBackground(func() { s.deleteAt(s.ctx, from, d) })
}

// receiptDue reports whether a duplicate of message id may be answered
// with a receipt now, and notes that it is.
func (s *Service) receiptDue(id [16]byte) bool {
	const maxNoted = 4096
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.receipted[id]; ok && now.Sub(t) < receiptEvery {
		return false
	}
	if len(s.receipted) >= maxNoted {
		for k, t := range s.receipted {
			if now.Sub(t) >= receiptEvery {
				delete(s.receipted, k)
			}
		}
		if len(s.receipted) >= maxNoted {
			clear(s.receipted)
		}
	}
	s.receipted[id] = now
	return true
}

// receiveReceipt marks the message a receipt acknowledges delivered. A
// receipt for a message delivered already is a duplicate (relays hold
// copies of a receipt as of a message): the relay that brought it is
// told its secret.
func (s *Service) receiveReceipt(from identity.Address, env *envelope.Envelope, l *envelope.Letter, id string) Response {
	if s.wasDelivered(l) {
		if from != l.From {
			d := deletion(l) // not the letter: it may be megabytes
			s.tryBackground(func() { s.deleteAt(s.ctx, from, d) })
		}
		return Response{ID: id, Status: StatusDuplicate}
	}
	exp, r, ok := s.verifyStamp(env, id)
	if !ok {
		return r
	}
	s.delivered(l)
	s.spend(env.Stamp, exp)
	s.background(func() { s.dropCopies(s.ctx, from, l) })
	return Response{ID: id, Status: StatusAccepted}
}

// wasDelivered reports whether the message a receipt acknowledges is in
// the outbox as delivered already.
func (s *Service) wasDelivered(l *envelope.Letter) bool {
	msgID, _, err := envelope.ParseReceipt(l)
	if err != nil {
		return false
	}
	m, err := s.cfg.DB.Outbox().Get(msgID)
	return err == nil && m.State == store.OutDelivered
}

// delivered marks the message a receipt acknowledges as delivered.
func (s *Service) delivered(l *envelope.Letter) {
	msgID, _, err := envelope.ParseReceipt(l)
	if err != nil {
		s.log.Debug("messages: receipt refused", "err", err)
		return
	}
	var state string
	_, err = s.cfg.DB.Outbox().Update(msgID, func(m *store.OutMsg) error {
		sent, err := envelope.Parse(m.Envelope, 0)
		if err != nil {
			return fmt.Errorf("the sent envelope: %w", err)
		}
		if _, err := envelope.CheckReceipt(l, sent); err != nil {
			return err
		}
		if m.State != store.OutDelivered {
			m.State, state = store.OutDelivered, string(store.OutDelivered)
		}
		return nil
	})
	if err != nil {
		s.log.Debug("messages: receipt not matched", "err", err)
		return
	}
	if state != "" {
		s.cfg.Router.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindState, ID: hex.EncodeToString(msgID[:]), State: state})
	}
}

// fetchFrame answers a node that asks for the envelopes waiting for it:
// only the recipient itself may fetch, which its session proves. The
// envelopes follow as msg requests, pushed from the service's own context
// (the frame's ends once it is answered).
func (s *Service) fetchFrame(ctx context.Context, f kernelapi.Frame) {
	waiting, err := s.relay.ForRecipient(f.From)
	if err != nil {
		s.refuse(ctx, f, wire.CodeFailed, "relay store unavailable")
		return
	}
	s.reply(ctx, f, NameFetched, Fetched{Count: len(waiting)})
	if len(waiting) > 0 {
		s.pushFor(f.From)
	}
}

// deleteFrame drops an envelope whose deletion secret a peer shows.
func (s *Service) deleteFrame(ctx context.Context, f kernelapi.Frame) {
	var d Delete
	if err := f.Envelope.Decode(&d); err != nil {
		s.refuse(ctx, f, wire.CodeInvalidData, err.Error())
		return
	}
	id, err := parseID(d.ID)
	if err != nil || len(d.Secret) != 32 {
		s.refuse(ctx, f, wire.CodeInvalidData, "msg_delete needs an id and a 32-byte secret")
		return
	}
	err = s.relay.Delete(ctx, id, d.Secret)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrWrongSecret) {
		s.log.Debug("messages: relay copy not deleted", "err", err)
	}
	s.reply(ctx, f, NameDeleted, Deleted{Deleted: err == nil})
}

// answer replies to a msg frame.
func (s *Service) answer(ctx context.Context, f kernelapi.Frame, r Response) {
	s.reply(ctx, f, NameMsgResponse, r)
}

// reply answers a request frame from a peer.
func (s *Service) reply(ctx context.Context, f kernelapi.Frame, name string, data any) {
	if err := kernelapi.Reply(ctx, s.ep, f, name, data); err != nil {
		s.log.Debug("messages: answer not sent", "peer", f.From.String(), "err", err)
	}
}

// refuse answers a frame from a peer with an error frame.
func (s *Service) refuse(ctx context.Context, f kernelapi.Frame, code wire.Code, text string) {
	if err := kernelapi.Refuse(ctx, s.ep, f, code, text); err != nil {
		s.log.Debug("messages: error frame not sent", "peer", f.From.String(), "err", err)
	}
}

// refuseBusy tells a peer the service has no room for its frame now. It
// does not block: if the kernel has no room either, the peer's call times
// out.
func (s *Service) refuseBusy(f kernelapi.Frame) {
	err := s.ep.Send(s.ctx, kernelapi.Endpoint, kernelapi.ErrorRequest{
		To: f.From, RID: f.Envelope.RID, Name: f.Envelope.Name, Code: wire.CodeBusy, Text: "messages service busy: try again later",
	})
	if err != nil {
		s.log.Debug("messages: busy error not sent", "peer", f.From.String(), "err", err)
	}
}

// parseID parses a message id: 32 hex digits.
func parseID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("message id %q: want 32 hex digits", truncate(s, 40))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("message id: %w", err)
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
