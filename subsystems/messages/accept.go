package messages

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
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
	r := s.accept(ctx, f.From, raw)
	if r.ID != p.ID && r.Status == StatusAccepted {
		r = Response{ID: p.ID, Status: StatusRefused, Code: CodeFormat, Reason: "the envelope's id is not the one its parts named"}
	}
	r.ID = p.ID
	s.answer(ctx, f, r)
}

// accept takes a whole envelope from the peer from: into the inbox if it
// is for this node, else into the relay store. It answers accepted only
// once the envelope is durable.
func (s *Service) accept(ctx context.Context, from identity.Address, raw []byte) Response {
	env, err := envelope.Parse(raw, s.maxEnvelope())
	switch {
	case errors.Is(err, envelope.ErrTooLarge):
		return Response{Status: StatusRefused, Code: CodeTooLarge, Reason: err.Error()}
	case err != nil:
		return Response{Status: StatusRefused, Code: CodeFormat, Reason: err.Error()}
	}
	id := hex.EncodeToString(env.ID[:])
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

// checkStamp verifies and spends env's stamp, answering why not.
func (s *Service) checkStamp(env *envelope.Envelope, id string) (Response, bool) {
	if env.Stamp == "" {
		return Response{ID: id, Status: StatusRefused, Code: CodeNoStamp, Reason: "the envelope carries no stamp"}, false
	}
	bits := envelope.StampBits(env.BodySize(), s.cfg.Bits)
	_, err := s.cfg.Stamps.Check(env.Stamp, env.Resource(), bits)
	var herr *hashcash.Error
	switch {
	case err == nil:
		return Response{}, true
	case errors.Is(err, store.ErrLowSpace):
		return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "this node is low on disk space"}, false
	case errors.As(err, &herr) && herr.Reason == hashcash.ReasonSpent:
		return Response{ID: id, Status: StatusRefused, Code: CodeSpent, Reason: err.Error()}, false
	case errors.As(err, &herr) && herr.Reason == hashcash.ReasonBits:
		return Response{ID: id, Status: StatusRefused, Code: CodeUnderWeight, Reason: err.Error()}, false
	case errors.As(err, &herr) && (herr.Reason == hashcash.ReasonExpired || herr.Reason == hashcash.ReasonFuture):
		return Response{ID: id, Status: StatusRefused, Code: CodeExpired, Reason: err.Error()}, false
	case errors.As(err, &herr):
		// Malformed, another resource, or the hash short of its claim.
		return Response{ID: id, Status: StatusRefused, Code: CodeUnderWeight, Reason: err.Error()}, false
	}
	s.log.Warn("messages: stamp not checked", "err", err)
	return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "stamp not checked"}, false
}

// hold stores an envelope for another node.
func (s *Service) hold(ctx context.Context, env *envelope.Envelope, raw []byte, id string) Response {
	if _, err := s.relay.Get(env.ID); err == nil {
		return Response{ID: id, Status: StatusDuplicate}
	}
	if r, ok := s.checkStamp(env, id); !ok {
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
	// The recipient may be connected right now.
	s.goWork(s.ctx, func() { s.pushWaiting(s.ctx, env.Recipient) })
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
		if _, err := s.cfg.DB.Inbox().Get(env.ID); err == nil {
			s.goWork(s.ctx, func() { s.acknowledge(s.ctx, from, l, false) })
			return Response{ID: id, Status: StatusDuplicate}
		}
		if r, ok := s.checkStamp(env, id); !ok {
			return r
		}
		_, err := s.cfg.DB.Inbox().Add(store.InMsg{
			ID: env.ID, From: l.From.String(), Subject: subject(l.Content), Content: l.Content,
			Received: s.cfg.Now(), Expires: env.Expires,
		})
		switch {
		case errors.Is(err, store.ErrDuplicate):
			s.goWork(s.ctx, func() { s.acknowledge(s.ctx, from, l, false) })
			return Response{ID: id, Status: StatusDuplicate}
		case err != nil:
			s.log.Warn("messages: message not stored", "err", err)
			return Response{ID: id, Status: StatusRefused, Code: CodeOverQuota, Reason: "not stored"}
		}
		s.cfg.Router.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindMail, ID: id, From: l.From.String(), Subject: subject(l.Content)})
		s.goWork(s.ctx, func() { s.acknowledge(s.ctx, from, l, true) })
		return Response{ID: id, Status: StatusAccepted}
	case envelope.KindReceipt:
		if r, ok := s.checkStamp(env, id); !ok {
			return r
		}
		s.delivered(l)
		s.goWork(s.ctx, func() { s.dropCopies(s.ctx, from, l) })
		return Response{ID: id, Status: StatusAccepted}
	}
	return Response{ID: id, Status: StatusRefused, Code: CodeFormat, Reason: fmt.Sprintf("unknown kind %d", l.Kind)}
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
// only the recipient itself may fetch, which its session proves.
func (s *Service) fetchFrame(ctx context.Context, f kernelapi.Frame) {
	waiting, err := s.relay.ForRecipient(f.From)
	if err != nil {
		s.refuse(ctx, f, wire.CodeFailed, "relay store unavailable")
		return
	}
	s.reply(ctx, f, NameFetched, Fetched{Count: len(waiting)})
	if len(waiting) > 0 {
		s.pushWaiting(ctx, f.From)
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

// pushWaiting pushes the envelopes held for addr to it, if the node has
// a session with it.
func (s *Service) pushWaiting(ctx context.Context, addr identity.Address) {
	waiting, err := s.relay.ForRecipient(addr)
	if err != nil || len(waiting) == 0 {
		return
	}
	for _, w := range waiting {
		env, err := s.relay.Get(w.ID)
		if err != nil {
			continue // deleted or expired meanwhile
		}
		pctx, cancel := context.WithTimeout(ctx, sendTimeout)
		r, err := push(pctx, s.ep, addr, hex.EncodeToString(w.ID[:]), env.Envelope)
		cancel()
		if err != nil {
			s.log.Debug("messages: push to recipient failed", "peer", addr.String(), "err", err)
			return // gone, or busy: it fetches later
		}
		if r.Status == StatusRefused {
			s.log.Debug("messages: recipient refused an envelope", "peer", addr.String(), "code", r.Code)
		}
	}
}

// answer replies to a msg frame.
func (s *Service) answer(ctx context.Context, f kernelapi.Frame, r Response) {
	s.reply(ctx, f, NameMsgResponse, r)
}

// reply answers a request frame from a peer.
func (s *Service) reply(ctx context.Context, f kernelapi.Frame, name string, data any) {
	_, err := s.ep.Call(ctx, kernelapi.Endpoint, kernelapi.ReplyRequest{To: f.From, RID: f.Envelope.RID, Name: name, Data: data})
	if err != nil {
		s.log.Debug("messages: answer not sent", "peer", f.From.String(), "err", err)
	}
}

// refuse answers a frame from a peer with an error frame.
func (s *Service) refuse(ctx context.Context, f kernelapi.Frame, code wire.Code, text string) {
	_, err := s.ep.Call(ctx, kernelapi.Endpoint, kernelapi.ErrorRequest{
		To: f.From, RID: f.Envelope.RID, Name: f.Envelope.Name, Code: code, Text: text,
	})
	if err != nil {
		s.log.Debug("messages: error frame not sent", "peer", f.From.String(), "err", err)
	}
}

// refuseBusy tells a peer the service has no room for its frame now.
func (s *Service) refuseBusy(ctx context.Context, f kernelapi.Frame) {
	s.wg.Go(func() { s.refuse(ctx, f, wire.CodeBusy, "messages service busy: try again later") })
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
