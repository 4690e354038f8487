package messages

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"sort"
	"strings"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// request answers a request of msgapi.
func (s *Service) request(ctx context.Context, body any) (any, error) {
	switch req := body.(type) {
	case msgapi.SendRequest:
		ids, err := s.send([]identity.Address{req.To}, req.Content)
		if err != nil {
			return nil, err
		}
		return ids[0], nil
	case msgapi.SendAllRequest:
		return s.send(req.To, req.Content)
	case msgapi.ListRequest:
		return s.list()
	case msgapi.ReadRequest:
		return s.read(req.ID)
	case msgapi.DeleteRequest:
		return nil, s.delete(req.ID)
	case msgapi.StatusRequest:
		return s.status()
	}
	return nil, fmt.Errorf("messages: unexpected %T", body)
}

// send seals a copy of a message for each recipient and puts them in the
// outbox, in one durable write; it returns their ids.
func (s *Service) send(to []identity.Address, content []byte) ([]string, error) {
	if len(to) == 0 {
		return nil, fmt.Errorf("%w: no recipient", msgapi.ErrBadInput)
	}
	if len(content) > s.cfg.MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", msgapi.ErrTooLarge, len(content), s.cfg.MaxMessageSize)
	}
	if len(content) == 0 {
		return nil, fmt.Errorf("%w: an empty message", msgapi.ErrBadInput)
	}
	now := s.cfg.Now()
	msgs := make([]store.OutMsg, len(to))
	for i, a := range to {
		if a == s.cfg.Identity.Address {
			return nil, fmt.Errorf("%w: that is this node's own address", msgapi.ErrBadInput)
		}
		env, _, err := envelope.Seal(s.cfg.Identity, a, envelope.KindMessage, content, now, now.Add(s.cfg.Expiry))
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		raw, err := env.MarshalBinary()
		if err != nil {
			return nil, err
		}
		msgs[i] = store.OutMsg{
			ID: env.ID, To: a.String(), Subject: subject(content), Content: content,
			Envelope: raw, SecretHash: env.SecretHash, State: store.OutQueued,
			NextAttempt: now, Created: now, Expires: env.Expires,
		}
	}
	if _, err := s.cfg.DB.Outbox().AddAll(msgs); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	s.wake()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = hex.EncodeToString(m.ID[:])
	}
	return ids, nil
}

// list returns the inbox and the outbox (not the receipts it sends),
// oldest first.
func (s *Service) list() ([]msgapi.Summary, error) {
	in, err := s.cfg.DB.Inbox().List()
	if err != nil {
		return nil, err
	}
	out, err := s.cfg.DB.Outbox().List()
	if err != nil {
		return nil, err
	}
	all := make([]msgapi.Summary, 0, len(in)+len(out))
	for _, m := range in {
		all = append(all, inSummary(m))
	}
	for _, m := range out {
		if !m.Receipt {
			all = append(all, s.outSummary(m))
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Date.Before(all[j].Date) })
	return all, nil
}

func inSummary(m store.InMsg) msgapi.Summary {
	return msgapi.Summary{ID: hex.EncodeToString(m.ID[:]), Box: "inbox", Peer: m.From, Subject: m.Subject,
		Date: m.Received, Size: m.Size, Read: m.Read}
}

func (s *Service) outSummary(m store.OutMsg) msgapi.Summary {
	sum := msgapi.Summary{ID: hex.EncodeToString(m.ID[:]), Box: "outbox", Peer: m.To, Subject: m.Subject,
		Date: m.Created, Size: len(m.Content), State: string(m.State), Relays: m.Relays, Reason: m.Reason}
	if m.State == store.OutQueued && s.isMinting(m.ID) {
		sum.State = msgapi.StateMinting // not kept: see stamp
	}
	return sum
}

// find resolves an id or a unique prefix of one to a message.
func (s *Service) find(prefix string) (msgapi.Summary, error) {
	prefix = strings.ToLower(prefix)
	if prefix == "" {
		return msgapi.Summary{}, fmt.Errorf("%w: no id", msgapi.ErrBadInput)
	}
	all, err := s.list()
	if err != nil {
		return msgapi.Summary{}, err
	}
	var found []msgapi.Summary
	for _, m := range all {
		if strings.HasPrefix(m.ID, prefix) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return msgapi.Summary{}, fmt.Errorf("message %q: %w", prefix, msgapi.ErrNoMessage)
	case 1:
		return found[0], nil
	}
	return msgapi.Summary{}, fmt.Errorf("message %q: %w", prefix, msgapi.ErrAmbiguous)
}

// read returns a message with its content; an inbox message is marked
// read.
func (s *Service) read(prefix string) (msgapi.Message, error) {
	sum, err := s.find(prefix)
	if err != nil {
		return msgapi.Message{}, err
	}
	id, _ := parseID(sum.ID)
	if sum.Box == "outbox" {
		m, err := s.cfg.DB.Outbox().Get(id)
		if err != nil {
			return msgapi.Message{}, err
		}
		return msgapi.Message{Summary: s.outSummary(m), Content: m.Content}, nil
	}
	m, err := s.cfg.DB.Inbox().Get(id)
	if err != nil {
		return msgapi.Message{}, err
	}
	if !m.Read {
		if err := s.cfg.DB.Inbox().SetRead(id, true); err != nil {
			return msgapi.Message{}, err
		}
		m.Read = true
	}
	return msgapi.Message{Summary: inSummary(m), Content: m.Content}, nil
}

// delete deletes a message from its box.
func (s *Service) delete(prefix string) error {
	sum, err := s.find(prefix)
	if err != nil {
		return err
	}
	id, _ := parseID(sum.ID)
	if sum.Box == "outbox" {
		return s.cfg.DB.Outbox().Delete(id)
	}
	return s.cfg.DB.Inbox().Delete(id)
}

// status returns the figures of `info`.
func (s *Service) status() (msgapi.Status, error) {
	var st msgapi.Status
	var err error
	if st.InboxTotal, st.InboxUnread, err = s.cfg.DB.Inbox().Counts(); err != nil {
		return st, err
	}
	counts, err := s.cfg.DB.Outbox().Counts()
	if err != nil {
		return st, err
	}
	st.OutboxQueued = counts[store.OutQueued] + counts[store.OutMinting] + counts[store.OutSent]
	st.OutboxDelivered = counts[store.OutDelivered]
	n, b, err := s.relay.Stats()
	if err != nil {
		return st, err
	}
	st.RelayStored, st.RelayBytes = int(n), b
	return st, nil
}

// Contribute adds the service's figures to a node's Info.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	st, err := router.CallAs[msgapi.Status](ctx, ep, msgapi.Endpoint, msgapi.StatusRequest{})
	if err != nil {
		return err
	}
	in.MessagesInfo = &node.MessagesInfo{
		InboxTotal: st.InboxTotal, InboxUnread: st.InboxUnread, OutboxQueued: st.OutboxQueued,
		OutboxDelivered: st.OutboxDelivered, RelayStored: st.RelayStored, RelayBytes: st.RelayBytes,
	}
	return nil
}

// subject returns the decoded Subject of an RFC 5322 message, or "".
func subject(content []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(content))
	if err != nil {
		return ""
	}
	subj := m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = dec
	}
	return truncate(strings.Join(strings.Fields(subj), " "), 200)
}
