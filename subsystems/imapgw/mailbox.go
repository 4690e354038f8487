package imapgw

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/phpchat/phpchat-node/store"
)

// The mailboxes that always exist, with their special use.
const (
	inboxName = "INBOX"
	sentName  = "Sent"
	delim     = '/'
)

var specialBoxes = []struct{ name, special string }{
	{inboxName, ""},
	{sentName, string(imap.MailboxAttrSent)},
	{"Drafts", string(imap.MailboxAttrDrafts)},
	{"Trash", string(imap.MailboxAttrTrash)},
	{"Junk", string(imap.MailboxAttrJunk)},
}

// The keywords of a Sent message's delivery state.
const (
	kwQueued    = imap.Flag("$Queued")
	kwSent      = imap.Flag("$Sent")
	kwDelivered = imap.Flag("$Delivered")
	kwFailed    = imap.Flag("$Failed")
)

func stateKeyword(s store.OutState) imap.Flag {
	switch s {
	case store.OutSent:
		return kwSent
	case store.OutDelivered:
		return kwDelivered
	case store.OutExpired, store.OutRefused:
		return kwFailed
	}
	return kwQueued
}

// state is the gateway's state for one Run: the mailboxes loaded so far,
// each with its tracker.
type state struct {
	db      *store.DB
	log     *slog.Logger
	maxSize int

	mu    sync.Mutex
	boxes map[string]*mailbox // by name
}

// init makes the special mailboxes that are missing and brings INBOX and
// Sent up to date with the inbox and outbox.
func (st *state) init() error {
	for _, b := range specialBoxes {
		_, err := st.db.Mailboxes().Create(b.name, b.special)
		if err != nil && !errors.Is(err, store.ErrMailboxExists) {
			return err
		}
	}
	for _, name := range []string{inboxName, sentName} {
		if _, err := st.open(name); err != nil {
			return err
		}
	}
	return nil
}

// canonical is the stored name of a mailbox: INBOX in any case is INBOX.
func canonical(name string) string {
	if strings.EqualFold(name, inboxName) {
		return inboxName
	}
	return name
}

// open returns the mailbox name, loading it and, for INBOX and Sent,
// syncing it on first use; store.ErrNotFound if there is none.
func (st *state) open(name string) (*mailbox, error) {
	name = canonical(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if mb := st.boxes[name]; mb != nil {
		return mb, nil
	}
	rec, err := st.db.Mailboxes().Get(name)
	if err != nil {
		return nil, err
	}
	recs, err := st.db.Mailboxes().Messages(rec.ID)
	if err != nil {
		return nil, err
	}
	mb := &mailbox{st: st, id: rec.ID, rec: rec, msgIDs: map[string]imap.UID{}}
	switch name {
	case inboxName:
		mb.kind = viewInbox
	case sentName:
		mb.kind = viewSent
	}
	for _, r := range recs {
		mb.msgs = append(mb.msgs, mb.newMessage(r))
	}
	mb.tracker = imapserver.NewMailboxTracker(uint32(len(mb.msgs)))
	if mb.kind != viewNone {
		if err := mb.sync(true); err != nil {
			return nil, err
		}
	}
	st.boxes[name] = mb
	return mb, nil
}

// sync brings the mailbox name, if loaded, up to date with its source.
func (st *state) sync(name string) {
	st.mu.Lock()
	mb := st.boxes[name]
	st.mu.Unlock()
	if mb == nil {
		return
	}
	if err := mb.sync(true); err != nil {
		st.log.Warn("imap: sync failed", "mailbox", name, "err", err)
	}
}

// forget drops the mailbox name from memory, after a DELETE or RENAME.
func (st *state) forget(name string) {
	st.mu.Lock()
	delete(st.boxes, name)
	st.mu.Unlock()
}

// Kinds of mailbox.
const (
	viewNone  = iota // holds its messages
	viewInbox        // INBOX: also the messages of the inbox
	viewSent         // Sent: also the messages of the outbox
)

// A mailbox is a loaded mailbox: its messages in UID order (the server's
// sequence numbers are their positions) and the tracker of its sessions.
// Every change is written to the store before it is made here and queued
// on the tracker.
type mailbox struct {
	st      *state
	tracker *imapserver.MailboxTracker
	kind    int
	id      uint32 // the store's mailbox id, which never changes

	mu       sync.Mutex
	rec      store.Mailbox
	msgs     []*message
	msgIDs   map[string]imap.UID // Message-ID → UID, in Sent
	lastSync time.Time
	gone     bool // deleted or renamed: sessions still on it see it empty
}

// A message is one message of a mailbox.
type message struct {
	uid   imap.UID
	rec   store.MailboxMsg
	flags []imap.Flag // stored flags
	seen  bool        // INBOX view: the inbox's read flag
	sent  imap.Flag   // Sent view: the delivery state keyword
}

func (mb *mailbox) newMessage(r store.MailboxMsg) *message {
	m := &message{uid: imap.UID(r.UID), rec: r}
	for _, f := range r.Flags {
		m.flags = append(m.flags, imap.Flag(f))
	}
	if r.MessageID != "" && mb.kind == viewSent {
		mb.msgIDs[r.MessageID] = m.uid
	}
	return m
}

// view reports whether the message is the inbox's or outbox's.
func (m *message) view() bool { return !m.rec.Held() }

// flagList is the message's flags as the client sees them.
func (m *message) flagList(kind int) []imap.Flag {
	flags := slices.Clone(m.flags)
	if m.view() {
		switch kind {
		case viewInbox:
			if m.seen {
				flags = append(flags, imap.FlagSeen)
			}
		case viewSent:
			flags = append(flags, m.sent)
		}
	}
	if flags == nil {
		flags = []imap.Flag{}
	}
	return flags
}

func (m *message) has(kind int, f imap.Flag) bool {
	return slices.ContainsFunc(m.flagList(kind), func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) })
}

// derived reports whether f is a flag of a view message that its source
// keeps, not the mailbox.
func derived(kind int, f imap.Flag) bool {
	switch kind {
	case viewInbox:
		return strings.EqualFold(string(f), string(imap.FlagSeen))
	case viewSent:
		for _, k := range []imap.Flag{kwQueued, kwSent, kwDelivered, kwFailed} {
			if strings.EqualFold(string(f), string(k)) {
				return true
			}
		}
	}
	return false
}

// syncInterval is the least time between two syncs that a client's
// command asks for; an event or the ticker syncs at once.
const syncInterval = time.Second

// sync compares a view mailbox with its source: messages new there get
// UIDs, in the source's order; messages gone from there are expunged; the
// inbox's read flags and the outbox's states are taken over.
func (mb *mailbox) sync(force bool) error {
	if mb.kind == viewNone {
		return nil
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.gone || !force && time.Since(mb.lastSync) < syncInterval {
		return nil
	}
	mb.lastSync = time.Now()
	type src struct {
		seen bool
		sent imap.Flag
	}
	var (
		order  [][16]byte
		source = map[[16]byte]src{}
		dates  = map[[16]byte]time.Time{}
		sizes  = map[[16]byte]int{}
	)
	switch mb.kind {
	case viewInbox:
		msgs, err := mb.st.db.Inbox().List()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			order = append(order, m.ID)
			source[m.ID] = src{seen: m.Read}
			dates[m.ID], sizes[m.ID] = m.Received, m.Size
		}
	case viewSent:
		msgs, err := mb.st.db.Outbox().List()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Receipt {
				continue
			}
			order = append(order, m.ID)
			source[m.ID] = src{sent: stateKeyword(m.State)}
			dates[m.ID] = m.Created
		}
	}
	known := make(map[[16]byte]bool, len(mb.msgs))
	var gone []int
	for i, m := range mb.msgs {
		if !m.view() {
			continue
		}
		known[m.rec.Ref] = true
		s, ok := source[m.rec.Ref]
		if !ok {
			gone = append(gone, i)
			continue
		}
		if s.seen != m.seen || s.sent != m.sent {
			m.seen, m.sent = s.seen, s.sent
			mb.tracker.QueueMessageFlags(uint32(i+1), m.uid, m.flagList(mb.kind), nil)
		}
	}
	if err := mb.expungeLocked(gone); err != nil {
		return err
	}
	var add []store.MailboxMsg
	for _, id := range order {
		if known[id] {
			continue
		}
		r := store.MailboxMsg{Ref: id, Date: dates[id], Size: sizes[id]}
		if mb.kind == viewSent {
			m, err := mb.st.db.Outbox().Get(id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			r.Size, r.MessageID = len(m.Content), messageID(m.Content)
			r.Flags = []string{string(imap.FlagSeen)}
		}
		add = append(add, r)
	}
	for len(add) > 0 {
		n := min(len(add), 1000)
		if err := mb.addLocked(add[:n], func(m *message) {
			s := source[m.rec.Ref]
			m.seen, m.sent = s.seen, s.sent
		}); err != nil {
			return err
		}
		add = add[n:]
	}
	return nil
}

// addLocked stores msgs in the mailbox, appends them with their new UIDs
// and announces them; set, if not nil, completes each message in memory.
func (mb *mailbox) addLocked(msgs []store.MailboxMsg, set func(*message)) error {
	added, rec, err := mb.st.db.Mailboxes().AddMessages(mb.rec.Name, msgs)
	if err != nil {
		return err
	}
	mb.rec = rec
	for _, r := range added {
		m := mb.newMessage(r)
		if set != nil {
			set(m)
		}
		mb.msgs = append(mb.msgs, m)
	}
	mb.tracker.QueueNumMessages(uint32(len(mb.msgs)))
	return nil
}

// add stores messages the mailbox holds (an APPEND, a COPY) and returns
// their UIDs. In Sent, a message whose Message-ID is there already is not
// stored again: its UID is returned.
func (mb *mailbox) add(msgs []store.MailboxMsg) ([]imap.UID, uint32, error) {
	if mb.kind == viewSent {
		// A client appends its copy right after sending: the message
		// may be in the outbox already, not yet in the view.
		if err := mb.sync(true); err != nil {
			return nil, 0, err
		}
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.gone {
		return nil, 0, errTryCreate
	}
	uids := make([]imap.UID, len(msgs))
	var fresh []store.MailboxMsg
	var at []int
	for i, m := range msgs {
		if mb.kind == viewSent && m.MessageID != "" {
			if uid, ok := mb.msgIDs[m.MessageID]; ok {
				uids[i] = uid
				continue
			}
		}
		fresh = append(fresh, m)
		at = append(at, i)
	}
	if len(fresh) > 0 {
		n := len(mb.msgs)
		if err := mb.addLocked(fresh, nil); err != nil {
			return nil, 0, err
		}
		for j, i := range at {
			uids[i] = mb.msgs[n+j].uid
		}
	}
	return uids, mb.rec.UIDValidity, nil
}

// expungeLocked deletes the messages at the positions idx (ascending):
// view messages from their source, then every one from the mailbox; and
// queues their EXPUNGEs, last first, so that each sequence number is
// right when it is sent.
func (mb *mailbox) expungeLocked(idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	uids := make([]uint32, len(idx))
	for j, i := range idx {
		m := mb.msgs[i]
		uids[j] = uint32(m.uid)
		var err error
		switch {
		case !m.view():
		case mb.kind == viewInbox:
			err = mb.st.db.Inbox().Delete(m.rec.Ref)
		case mb.kind == viewSent:
			err = mb.st.db.Outbox().Delete(m.rec.Ref)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if err := mb.st.db.Mailboxes().DeleteMessages(mb.rec.ID, uids); err != nil {
		return err
	}
	for j := len(idx) - 1; j >= 0; j-- {
		i := idx[j]
		if m := mb.msgs[i]; m.rec.MessageID != "" && mb.msgIDs[m.rec.MessageID] == m.uid {
			delete(mb.msgIDs, m.rec.MessageID)
		}
		mb.msgs = slices.Delete(mb.msgs, i, i+1)
		mb.tracker.QueueExpunge(uint32(i + 1))
	}
	return nil
}

// content returns a message's content from where it is kept.
func (mb *mailbox) content(m *message) ([]byte, error) {
	switch {
	case !m.view():
		return mb.st.db.Mailboxes().Content(mb.id, uint32(m.uid))
	case mb.kind == viewInbox:
		in, err := mb.st.db.Inbox().Get(m.rec.Ref)
		return in.Content, err
	default:
		out, err := mb.st.db.Outbox().Get(m.rec.Ref)
		return out.Content, err
	}
}

// status is the mailbox's STATUS.
func (mb *mailbox) status(options *imap.StatusOptions) *imap.StatusData {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	data := &imap.StatusData{Mailbox: mb.rec.Name}
	num := uint32(len(mb.msgs))
	if options.NumMessages {
		data.NumMessages = &num
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(mb.rec.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = mb.rec.UIDValidity
	}
	var unseen, deleted uint32
	var size int64
	for _, m := range mb.msgs {
		if !m.has(mb.kind, imap.FlagSeen) {
			unseen++
		}
		if m.has(mb.kind, imap.FlagDeleted) {
			deleted++
		}
		size += int64(m.rec.Size)
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	return data
}

// permanentFlags are the flags a client may set.
var permanentFlags = []imap.Flag{
	imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagWildcard,
}

// selectData is the mailbox's reply to SELECT; mb.mu is held.
func (mb *mailbox) selectDataLocked() *imap.SelectData {
	flags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	if mb.kind == viewSent {
		flags = append(flags, kwQueued, kwSent, kwDelivered, kwFailed)
	}
	data := &imap.SelectData{
		Flags:          flags,
		PermanentFlags: permanentFlags,
		NumMessages:    uint32(len(mb.msgs)),
		UIDNext:        imap.UID(mb.rec.UIDNext),
		UIDValidity:    mb.rec.UIDValidity,
	}
	for i, m := range mb.msgs {
		if !m.has(mb.kind, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data
}

// messageID is the Message-ID of a message, "" if it has none.
func messageID(content []byte) string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(content)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}
