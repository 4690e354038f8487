package imapgw

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/store"
)

// A session is one client's connection.
type session struct {
	st     *state
	auth   *mailauth.Checker
	source string // the client's IP address, for the login slowdown
	sel    *selected
}

// selected is the session's selected mailbox: its own view of the
// sequence numbers (the tracker's session).
type selected struct {
	mb        *mailbox
	tracker   *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)
var _ imapserver.SessionAppendLimit = (*session)(nil)

func newSession(st *state, auth *mailauth.Checker, c *imapserver.Conn) *session {
	source := c.NetConn().RemoteAddr().String()
	if host, _, err := net.SplitHostPort(source); err == nil {
		source = host
	}
	return &session{st: st, auth: auth, source: source}
}

func (s *session) Close() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	if s.sel != nil {
		s.sel.tracker.Close()
		s.sel = nil
	}
}

// Login checks the node's mail credentials; a failure is slowed down for
// this client's address (mailauth.Checker). AUTHENTICATE PLAIN comes here
// too.
func (s *session) Login(username, password string) error {
	if s.auth == nil || !s.auth.Check(s.source, username, password) {
		return imapserver.ErrAuthFailed
	}
	return nil
}

func (s *session) AppendLimit() uint32 { return uint32(min(s.st.maxSize, 1<<32-1)) }

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	mb, err := s.st.open(name)
	if err != nil {
		return nil, s.st.reply("select", err)
	}
	if err := mb.sync(true); err != nil {
		return nil, s.st.reply("select", err)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	s.sel = &selected{mb: mb, tracker: mb.tracker.NewSession(), readOnly: options.ReadOnly}
	return mb.selectDataLocked(), nil
}

func (s *session) Unselect() error {
	s.unselect()
	return nil
}

// validName reports whether a client may create a mailbox of this name.
func validName(name string) bool {
	return name != "" && len(name) <= 200 && !strings.HasPrefix(name, "/") && !strings.HasSuffix(name, "/") &&
		!strings.Contains(name, "//") && !strings.ContainsAny(name, "*%\r\n\x00") && !strings.EqualFold(name, inboxName)
}

func (s *session) Create(name string, _ *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, string(delim)) // RFC 9051: a trailing delimiter is dropped
	if strings.EqualFold(name, inboxName) {
		return errExists
	}
	if !validName(name) {
		return errBadName
	}
	_, err := s.st.db.Mailboxes().Create(name, "")
	return s.st.reply("create", err)
}

func special(name string) bool {
	name = canonical(name)
	for _, b := range specialBoxes {
		if b.name == name {
			return true
		}
	}
	return false
}

func (s *session) Delete(name string) error {
	if special(name) {
		return errSpecial
	}
	s.drop(name)
	return s.st.reply("delete", s.st.db.Mailboxes().Delete(name))
}

func (s *session) Rename(old, name string, _ *imap.RenameOptions) error {
	if special(old) {
		return errSpecial
	}
	if !validName(name) {
		return errBadName
	}
	if err := s.st.db.Mailboxes().Rename(old, name); err != nil {
		return s.st.reply("rename", err)
	}
	s.drop(old)
	return nil
}

// drop marks the loaded mailbox name gone and forgets it: sessions that
// have it selected keep what they see but can change nothing.
func (s *session) drop(name string) {
	s.st.mu.Lock()
	mb := s.st.boxes[name]
	delete(s.st.boxes, name)
	s.st.mu.Unlock()
	if mb != nil {
		mb.mu.Lock()
		mb.gone = true
		mb.mu.Unlock()
	}
}

func (s *session) Subscribe(name string) error {
	return s.st.reply("subscribe", s.st.db.Mailboxes().SetSubscribed(canonical(name), true))
}

func (s *session) Unsubscribe(name string) error {
	return s.st.reply("unsubscribe", s.st.db.Mailboxes().SetSubscribed(canonical(name), false))
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	boxes, err := s.st.db.Mailboxes().List()
	if err != nil {
		return s.st.reply("list", err)
	}
	sort.Slice(boxes, func(i, j int) bool { return boxes[i].Name < boxes[j].Name })
	for _, b := range boxes {
		if !slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(b.Name, delim, ref, p) }) {
			continue
		}
		if options.SelectSubscribed && !b.Subscribed || options.SelectSpecialUse && b.Special == "" {
			continue
		}
		data := &imap.ListData{Mailbox: b.Name, Delim: delim}
		if b.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if b.Special != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(b.Special))
		}
		if options.ReturnStatus != nil {
			mb, err := s.st.open(b.Name)
			if err != nil {
				return s.st.reply("list", err)
			}
			data.Status = mb.status(options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.st.open(name)
	if err != nil {
		return nil, s.st.reply("status", err)
	}
	if err := mb.sync(false); err != nil {
		return nil, s.st.reply("status", err)
	}
	return mb.status(options), nil
}

// Append stores a message the client sends. The literal is read whole
// before anything is stored, so a client that stops mid-APPEND leaves
// nothing; the library has refused a literal over AppendLimit already.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mb, err := s.st.open(name)
	if errors.Is(err, store.ErrNotFound) {
		io.Copy(io.Discard, r)
		return nil, errTryCreate
	}
	if err != nil {
		return nil, s.st.reply("append", err)
	}
	content, err := io.ReadAll(io.LimitReader(r, int64(s.st.maxSize)+1))
	if err == nil && int64(len(content)) < r.Size() {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err // the client stopped: nothing was stored
	}
	if len(content) > s.st.maxSize {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message larger than max-message-size"}
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	msg := store.MailboxMsg{Date: date.UTC(), Size: len(content), MessageID: messageID(content), Content: content}
	for _, f := range options.Flags {
		if f != flagRecent {
			msg.Flags = appendFlag(msg.Flags, string(f))
		}
	}
	uids, validity, err := mb.add([]store.MailboxMsg{msg})
	if err != nil {
		return nil, s.st.reply("append", err)
	}
	return &imap.AppendData{UID: uids[0], UIDValidity: validity}, nil
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	if err := s.sel.mb.sync(false); err != nil {
		s.st.log.Warn("imap: sync failed", "err", err)
	}
	return s.sel.tracker.Poll(w, allowExpunge)
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	return s.sel.tracker.Idle(w, stop)
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	mb := v.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var idx []int
	for i, m := range mb.msgs {
		if (uids == nil || uids.Contains(m.uid)) && m.has(mb.kind, imap.FlagDeleted) {
			idx = append(idx, i)
		}
	}
	// The EXPUNGEs reach this session too, through the tracker, when the
	// library polls it after the command.
	return s.st.reply("expunge", mb.expungeLocked(idx))
}

// A hit is a message a command names: its server sequence number and the
// client's.
type hit struct {
	seq, clientSeq uint32
	m              *message
}

// resolveLocked returns the messages of numSet, in sequence order; mb.mu
// is held.
func (v *selected) resolveLocked(numSet imap.NumSet) []hit {
	mb := v.mb
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	var hits []hit
	switch set := numSet.(type) {
	case imap.SeqSet:
		var max uint32 // the client's largest sequence number
		for i := len(mb.msgs); i > 0 && max == 0; i-- {
			max = v.tracker.EncodeSeqNum(uint32(i))
		}
		set = slices.Clone(set)
		for i := range set {
			staticRange(&set[i].Start, &set[i].Stop, max)
		}
		for i, m := range mb.msgs {
			c := v.tracker.EncodeSeqNum(uint32(i + 1))
			if c != 0 && set.Contains(c) {
				hits = append(hits, hit{uint32(i + 1), c, m})
			}
		}
	case imap.UIDSet:
		max := uint32(mb.rec.UIDNext - 1)
		if n := len(mb.msgs); n > 0 {
			max = uint32(mb.msgs[n-1].uid)
		}
		set = slices.Clone(set)
		for i := range set {
			staticRange((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), max)
		}
		for i, m := range mb.msgs {
			if set.Contains(m.uid) {
				hits = append(hits, hit{uint32(i + 1), v.tracker.EncodeSeqNum(uint32(i + 1)), m})
			}
		}
	}
	return hits
}

// staticRange replaces "*" (zero) with max.
func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	mb := v.mb
	mb.mu.Lock()
	hits := v.resolveLocked(numSet)
	err := s.storeLocked(v, hits, flags.Op, flags.Flags)
	mb.mu.Unlock()
	if err != nil {
		return s.st.reply("store", err)
	}
	if flags.Silent {
		return nil
	}
	return s.fetch(w, numSet, &imap.FetchOptions{Flags: true}, false)
}

// storeLocked changes the flags of hits, in the store first: the stored
// flags in the mailbox, \Seen of INBOX's view messages in the inbox. A
// Sent message's delivery keyword is not the client's to change.
func (s *session) storeLocked(v *selected, hits []hit, op imap.StoreFlagsOp, flags []imap.Flag) error {
	mb := v.mb
	if mb.gone {
		return errTryCreate
	}
	changed := map[uint32][]string{}
	type seen struct {
		m    *message
		read bool
	}
	var reads []seen
	for _, h := range hits {
		m := h.m
		stored := slices.Clone(m.rec.Flags)
		wantSeen := m.seen
		if op == imap.StoreFlagsSet {
			stored = nil
			wantSeen = false
		}
		for _, f := range flags {
			if f == flagRecent {
				continue
			}
			if m.view() && derived(mb.kind, f) {
				if mb.kind == viewInbox {
					wantSeen = op != imap.StoreFlagsDel
				}
				continue
			}
			if op == imap.StoreFlagsDel {
				stored = deleteFlag(stored, string(f))
			} else {
				stored = appendFlag(stored, string(f))
			}
		}
		if !slices.Equal(stored, m.rec.Flags) {
			changed[uint32(m.uid)] = stored
		}
		if m.view() && mb.kind == viewInbox && wantSeen != m.seen {
			reads = append(reads, seen{m, wantSeen})
		}
	}
	for _, r := range reads {
		if err := s.st.db.Inbox().SetRead(r.m.rec.Ref, r.read); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if len(changed) > 0 {
		if err := s.st.db.Mailboxes().SetFlags(mb.rec.ID, changed); err != nil {
			return err
		}
	}
	for _, r := range reads {
		r.m.seen = r.read
	}
	for _, h := range hits {
		f, ok := changed[uint32(h.m.uid)]
		if ok {
			h.m.rec.Flags = f
			h.m.flags = h.m.flags[:0]
			for _, x := range f {
				h.m.flags = append(h.m.flags, imap.Flag(x))
			}
		}
		if ok || slices.ContainsFunc(reads, func(r seen) bool { return r.m == h.m }) {
			mb.tracker.QueueMessageFlags(h.seq, h.m.uid, h.m.flagList(mb.kind), v.tracker)
		}
	}
	return nil
}

// appendFlag adds f to flags unless it is there in any case.
func appendFlag(flags []string, f string) []string {
	if slices.ContainsFunc(flags, func(g string) bool { return strings.EqualFold(f, g) }) {
		return flags
	}
	return append(flags, f)
}

func deleteFlag(flags []string, f string) []string {
	return slices.DeleteFunc(flags, func(g string) bool { return strings.EqualFold(f, g) })
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := s.copy(numSet, dest)
	return data, err
}

// copy copies the messages of numSet to dest and returns the COPYUID data
// and the messages copied.
func (s *session) copy(numSet imap.NumSet, dest string) (*imap.CopyData, []hit, error) {
	to, err := s.st.open(dest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errTryCreate
	}
	if err != nil {
		return nil, nil, s.st.reply("copy", err)
	}
	v := s.sel
	v.mb.mu.Lock()
	hits := v.resolveLocked(numSet)
	kind := v.mb.kind
	flags := make([][]imap.Flag, len(hits))
	for i, h := range hits {
		flags[i] = h.m.flagList(kind)
	}
	v.mb.mu.Unlock()
	var (
		msgs []store.MailboxMsg
		src  imap.UIDSet
	)
	for i, h := range hits {
		content, err := v.mb.content(h.m)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, nil, s.st.reply("copy", err)
		}
		msg := store.MailboxMsg{Date: h.m.rec.Date, Size: len(content), MessageID: messageID(content), Content: content}
		for _, f := range flags[i] {
			msg.Flags = appendFlag(msg.Flags, string(f))
		}
		msgs = append(msgs, msg)
		src.AddNum(h.m.uid)
	}
	if len(msgs) == 0 {
		return &imap.CopyData{}, nil, nil
	}
	uids, validity, err := to.add(msgs)
	if err != nil {
		return nil, nil, s.st.reply("copy", err)
	}
	var dst imap.UIDSet
	for _, u := range uids {
		dst.AddNum(u)
	}
	return &imap.CopyData{UIDValidity: validity, SourceUIDs: src, DestUIDs: dst}, hits, nil
}

// Move copies the messages to dest, then expunges them here: a crash in
// between leaves them in both, never in neither.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	data, hits, err := s.copy(numSet, dest)
	if err != nil {
		return err
	}
	mb := v.mb
	mb.mu.Lock()
	var idx []int
	for i, m := range mb.msgs {
		if slices.ContainsFunc(hits, func(h hit) bool { return h.m == m }) {
			idx = append(idx, i)
		}
	}
	err = mb.expungeLocked(idx)
	mb.mu.Unlock()
	if err != nil {
		return s.st.reply("move", err)
	}
	// The EXPUNGEs follow through the tracker when the library polls.
	return w.WriteCopyData(data)
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	for _, bs := range options.BodySection {
		if !bs.Peek {
			markSeen = true
		}
	}
	return s.fetch(w, numSet, options, markSeen && !s.sel.readOnly)
}

// fetch writes the items of options for the messages of numSet, marking
// them \Seen first if markSeen. A message's content is read only when an
// item needs it.
func (s *session) fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions, markSeen bool) error {
	v := s.sel
	mb := v.mb
	mb.mu.Lock()
	hits := v.resolveLocked(numSet)
	if markSeen {
		var unseen []hit
		for _, h := range hits {
			if !h.m.has(mb.kind, imap.FlagSeen) {
				unseen = append(unseen, h)
			}
		}
		if err := s.storeLocked(v, unseen, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
			mb.mu.Unlock()
			return s.st.reply("fetch", err)
		}
	}
	type item struct {
		hit
		flags []imap.Flag
	}
	items := make([]item, len(hits))
	for i, h := range hits {
		items[i] = item{h, h.m.flagList(mb.kind)}
	}
	mb.mu.Unlock()

	needContent := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, it := range items {
		if it.clientSeq == 0 {
			continue // the client does not know this message yet
		}
		var content []byte
		if needContent {
			var err error
			content, err = mb.content(it.m)
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted meanwhile; its EXPUNGE follows
			}
			if err != nil {
				return s.st.reply("fetch", err)
			}
		}
		if err := writeMessage(w.CreateMessage(it.clientSeq), it.m, it.flags, content, options); err != nil {
			return err
		}
	}
	return nil
}

func writeMessage(w *imapserver.FetchResponseWriter, m *message, flags []imap.Flag, content []byte, options *imap.FetchOptions) error {
	w.WriteUID(m.uid)
	if options.Flags {
		w.WriteFlags(flags)
	}
	if options.InternalDate {
		w.WriteInternalDate(m.rec.Date)
	}
	if options.RFC822Size {
		w.WriteRFC822Size(int64(m.rec.Size))
	}
	if options.Envelope {
		w.WriteEnvelope(envelope(content))
	}
	if options.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(content)))
	}
	for _, bs := range options.BodySection {
		b := imapserver.ExtractBodySection(bytes.NewReader(content), bs)
		if err := writeLiteral(w.WriteBodySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(content), bs)
		if err := writeLiteral(w.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(content), bss))
	}
	return w.Close()
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// flagRecent is IMAP4rev1's \Recent, which IMAP4rev2 dropped: never stored.
const flagRecent = imap.Flag(`\Recent`)
