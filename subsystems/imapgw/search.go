package imapgw

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/phpchat/phpchat-node/store"
)

func envelope(content []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(content)))
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(h)
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	v := s.sel
	mb := v.mb
	mb.mu.Lock()
	staticCriteria(v, criteria)
	type cand struct {
		hit
		flags []imap.Flag
	}
	var cands []cand
	for i, m := range mb.msgs {
		cands = append(cands, cand{hit{uint32(i + 1), v.tracker.EncodeSeqNum(uint32(i + 1)), m}, m.flagList(mb.kind)})
	}
	mb.mu.Unlock()

	needContent := needsContent(criteria)
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for _, c := range cands {
		var content []byte
		if needContent {
			var err error
			content, err = mb.content(c.m)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, s.st.reply("search", err)
			}
		}
		if !match(c.clientSeq, c.m, c.flags, content, criteria) {
			continue
		}
		uidSet.AddNum(c.m.uid)
		var num uint32
		switch kind {
		case imapserver.NumKindSeq:
			if c.clientSeq == 0 {
				continue
			}
			seqSet.AddNum(c.clientSeq)
			num = c.clientSeq
		case imapserver.NumKindUID:
			num = uint32(c.m.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		v.searchRes = uidSet
	}
	return &data, nil
}

// staticCriteria replaces "*" and "$" in the criteria's sets; mb.mu is held.
func staticCriteria(v *selected, c *imap.SearchCriteria) {
	var seqs []imap.SeqSet
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			c.UID = append(c.UID, v.searchRes)
			continue
		}
		var max uint32
		for i := len(v.mb.msgs); i > 0 && max == 0; i-- {
			max = v.tracker.EncodeSeqNum(uint32(i))
		}
		for i := range set {
			staticRange(&set[i].Start, &set[i].Stop, max)
		}
		seqs = append(seqs, set)
	}
	c.SeqNum = seqs
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			c.UID[i] = v.searchRes
			continue
		}
		max := v.mb.rec.UIDNext - 1
		if n := len(v.mb.msgs); n > 0 {
			max = uint32(v.mb.msgs[n-1].uid)
		}
		for j := range set {
			staticRange((*uint32)(&set[j].Start), (*uint32)(&set[j].Stop), max)
		}
	}
	for i := range c.Not {
		staticCriteria(v, &c.Not[i])
	}
	for i := range c.Or {
		staticCriteria(v, &c.Or[i][0])
		staticCriteria(v, &c.Or[i][1])
	}
}

func needsContent(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsContent(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsContent(&c.Or[i][0]) || needsContent(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// match reports whether a message meets the criteria.
func match(seq uint32, m *message, flags []imap.Flag, content []byte, c *imap.SearchCriteria) bool {
	for _, set := range c.SeqNum {
		if seq == 0 || !set.Contains(seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(m.uid) {
			return false
		}
	}
	if !matchDate(m.rec.Date, c.Since, c.Before) {
		return false
	}
	has := func(f imap.Flag) bool {
		for _, g := range flags {
			if strings.EqualFold(string(f), string(g)) {
				return true
			}
		}
		return false
	}
	for _, f := range c.Flag {
		if !has(f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if has(f) {
			return false
		}
	}
	if c.Larger != 0 && int64(m.rec.Size) <= c.Larger || c.Smaller != 0 && int64(m.rec.Size) >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		e, err := gomessage.Read(bytes.NewReader(content))
		if e == nil {
			_ = err
			return false
		}
		h := mail.Header{Header: e.Header}
		for _, hc := range c.Header {
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !matchEntity(content, text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(content, body, false) {
			return false
		}
	}
	for i := range c.Not {
		if match(seq, m, flags, content, &c.Not[i]) {
			return false
		}
	}
	for _, or := range c.Or {
		if !match(seq, m, flags, content, &or[0]) && !match(seq, m, flags, content, &or[1]) {
			return false
		}
	}
	return true
}

// matchDate compares dates without their time or zone (RFC 9051).
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return (since.IsZero() || !t.Before(since)) && (before.IsZero() || t.Before(before))
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchEntity looks for pattern in the text parts of a message (decoded)
// and, with header, in its header fields.
func matchEntity(content []byte, pattern string, header bool) bool {
	e, _ := gomessage.Read(bytes.NewReader(content))
	if e == nil {
		return bytes.Contains(bytes.ToLower(content), bytes.ToLower([]byte(pattern)))
	}
	return matchPart(e, strings.ToLower(pattern), header)
}

func matchPart(e *gomessage.Entity, pattern string, header bool) bool {
	if header && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchPart(p, pattern, header) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, 16<<20))
	return bytes.Contains(bytes.ToLower(b), []byte(pattern))
}
