package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func msgID(n int) [16]byte {
	var id [16]byte
	id[15] = byte(n)
	return id
}

func outNums(ms []OutMsg) []int {
	var out []int
	for _, m := range ms {
		out = append(out, int(m.ID[15]))
	}
	return out
}

func TestOutbox(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	o := db.Outbox()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	big := bytes.Repeat([]byte("x"), 8<<20) // the largest message
	for i, n := range []int{3, 1, 2} {
		m, err := o.Add(OutMsg{ID: msgID(n), To: "pc1bob", Content: fmt.Appendf(nil, "body %d", n),
			NextAttempt: t0.Add(time.Duration(i) * time.Minute)})
		if err != nil || m.Num == 0 || m.State != OutQueued || m.Created.IsZero() {
			t.Fatalf("Add %d = %+v, %v", n, m, err)
		}
	}
	if _, err := o.Add(OutMsg{ID: msgID(1)}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Add of a taken id: %v, want ErrDuplicate", err)
	}
	if _, err := o.Add(OutMsg{ID: msgID(4), Content: big, NextAttempt: t0.Add(time.Hour)}); err != nil {
		t.Fatalf("Add of 8 MiB: %v", err)
	}
	due, err := o.Due(t0.Add(time.Minute))
	if err != nil || fmt.Sprint(outNums(due)) != "[3 1]" {
		t.Fatalf("Due = %v, %v; want [3 1]", outNums(due), err)
	}

	// A state change keeps the content, stores the envelope, moves the
	// message in the due index or out of it when final.
	m, err := o.Update(msgID(3), func(m *OutMsg) error {
		if string(m.Content) != "body 3" {
			return fmt.Errorf("fn sees content %q", m.Content)
		}
		m.State, m.Envelope, m.Relays, m.Attempts = OutSent, []byte("sealed 3"), 8, 1
		m.NextAttempt = t0.Add(2 * time.Hour)
		return nil
	})
	if err != nil || m.State != OutSent || m.Num == 0 {
		t.Fatalf("Update = %+v, %v", m, err)
	}
	if _, err := o.Update(msgID(1), func(m *OutMsg) error { m.State = OutDelivered; return nil }); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("no")
	if _, err := o.Update(msgID(2), func(m *OutMsg) error { m.State = OutRefused; return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("Update whose fn fails: %v, want its error", err)
	}
	if _, err := o.Update(msgID(9), func(*OutMsg) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update of a missing message: %v, want ErrNotFound", err)
	}
	db.Close()

	db = open(t, dir)
	defer db.Close()
	o = db.Outbox()
	got, err := o.Get(msgID(3))
	if err != nil || string(got.Content) != "body 3" || string(got.Envelope) != "sealed 3" ||
		got.State != OutSent || got.Relays != 8 || got.To != "pc1bob" {
		t.Fatalf("Get after restart = %+v, %v", got, err)
	}
	if got, err := o.Get(msgID(4)); err != nil || !bytes.Equal(got.Content, big) {
		t.Fatalf("Get of 8 MiB: %d bytes, %v", len(got.Content), err)
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(2 * time.Minute), "[2]"},
		{t0.Add(3 * time.Hour), "[2 4 3]"},
	} {
		due, err := o.Due(tc.at)
		if err != nil || fmt.Sprint(outNums(due)) != tc.want {
			t.Fatalf("Due(%v) = %v, %v; want %s", tc.at, outNums(due), err, tc.want)
		}
	}
	list, err := o.List()
	if err != nil || fmt.Sprint(outNums(list)) != "[3 1 2 4]" || list[3].Content != nil {
		t.Fatalf("List = %v, %v; want [3 1 2 4] without content", outNums(list), err)
	}
	counts, err := o.Counts()
	if err != nil || fmt.Sprint(counts) != "map[delivered:1 queued:2 sent:1]" {
		t.Fatalf("Counts = %v, %v", counts, err)
	}
	if err := o.Delete(msgID(3)); err != nil {
		t.Fatal(err)
	}
	if err := o.Delete(msgID(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if due, _ := o.Due(t0.Add(3 * time.Hour)); fmt.Sprint(outNums(due)) != "[2 4]" {
		t.Fatalf("Due after Delete = %v, want [2 4]", outNums(due))
	}
	if _, err := o.Get(msgID(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func TestInbox(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	in := db.Inbox()
	for _, n := range []int{2, 1, 3} {
		m, err := in.Add(InMsg{ID: msgID(n), From: "pc1alice", Subject: "s", Content: fmt.Appendf(nil, "body %d", n),
			Expires: time.Now().Add(time.Hour)})
		if err != nil || m.Num == 0 || m.Size != 6 || m.Received.IsZero() {
			t.Fatalf("Add %d = %+v, %v", n, m, err)
		}
	}
	if _, err := in.Add(InMsg{ID: msgID(1), Content: []byte("again")}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Add of a received id: %v, want ErrDuplicate", err)
	}
	if err := in.SetRead(msgID(1), true); err != nil {
		t.Fatal(err)
	}
	if err := in.SetRead(msgID(9), true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetRead of a missing message: %v, want ErrNotFound", err)
	}
	db.Close()

	db = open(t, dir)
	defer db.Close()
	in = db.Inbox()
	if total, unread, err := in.Counts(); err != nil || total != 3 || unread != 2 {
		t.Fatalf("Counts = %d, %d, %v; want 3, 2", total, unread, err)
	}
	m, err := in.Get(msgID(1))
	if err != nil || !m.Read || string(m.Content) != "body 1" || m.From != "pc1alice" {
		t.Fatalf("Get after restart = %+v, %v", m, err)
	}
	list, err := in.List()
	if err != nil || len(list) != 3 || list[0].ID != msgID(2) || list[2].ID != msgID(3) || list[0].Content != nil {
		t.Fatalf("List = %+v, %v; want 2, 1, 3 without content", list, err)
	}
	if err := in.Delete(msgID(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Add(InMsg{ID: msgID(2), Content: []byte("again")}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Add of a deleted, unexpired id: %v, want ErrDuplicate", err)
	}
	if total, unread, err := in.Counts(); err != nil || total != 2 || unread != 1 {
		t.Fatalf("Counts after Delete = %d, %d, %v; want 2, 1", total, unread, err)
	}
	if err := in.Delete(msgID(2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
}

// Of concurrent Adds of one message exactly one succeeds, the others are
// duplicates, never transaction conflicts.
func TestInboxConcurrentAdd(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	in := db.Inbox()
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := in.Add(InMsg{ID: msgID(7), Content: []byte("once")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrDuplicate):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if list, err := in.List(); won != 1 || err != nil || len(list) != 1 {
		t.Fatalf("%d Adds succeeded, %d listed (%v); want 1", won, len(list), err)
	}
}

// Concurrent Adds share transactions (groupCommit) and each is on disk
// when it returns: after a reopen every message is there, with its own
// content and a distinct number, in the outbox and in the inbox. The
// messages are large enough that the writers' batches are split
// (maxGroupBytes), and a few ids are added twice, of which one Add wins.
func TestConcurrentAddsDurable(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	const writers, each = 16, 12
	content := func(w, i int) []byte {
		return append(fmt.Appendf(nil, "message %d.%d ", w, i), bytes.Repeat([]byte{byte('a' + w)}, 20<<10)...)
	}
	id := func(w, i int) [16]byte {
		var id [16]byte
		id[0], id[1] = byte(w), byte(i)
		return id
	}
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		outNums       = map[uint64]bool{}
		inNums        = map[uint64]bool{}
		dupOut, dupIn int
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				// Writers 0 and 1 add the same ids: one Add of each wins.
				ww := w
				if w == 1 {
					ww = 0
				}
				om, oerr := db.Outbox().Add(OutMsg{ID: id(ww, i), To: "pc1bob", Content: content(ww, i)})
				im, ierr := db.Inbox().Add(InMsg{ID: id(ww, i), From: "pc1alice", Content: content(ww, i)})
				mu.Lock()
				switch {
				case oerr == nil:
					if outNums[om.Num] {
						t.Errorf("outbox number %d given twice", om.Num)
					}
					outNums[om.Num] = true
				case errors.Is(oerr, ErrDuplicate):
					dupOut++
				default:
					t.Errorf("outbox Add: %v", oerr)
				}
				switch {
				case ierr == nil:
					if inNums[im.Num] {
						t.Errorf("inbox number %d given twice", im.Num)
					}
					inNums[im.Num] = true
				case errors.Is(ierr, ErrDuplicate):
					dupIn++
				default:
					t.Errorf("inbox Add: %v", ierr)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d Adds in %d transactions", 2*writers*each, db.group.commits.Load())
	if dupOut != each || dupIn != each {
		t.Errorf("%d outbox and %d inbox duplicates refused, want %d each", dupOut, dupIn, each)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, dir)
	defer db.Close()
	out, err := db.Outbox().List()
	if err != nil || len(out) != (writers-1)*each {
		t.Fatalf("outbox after reopen: %d messages (%v), want %d", len(out), err, (writers-1)*each)
	}
	in, err := db.Inbox().List()
	if err != nil || len(in) != (writers-1)*each {
		t.Fatalf("inbox after reopen: %d messages (%v), want %d", len(in), err, (writers-1)*each)
	}
	for w := range writers {
		if w == 1 {
			continue
		}
		for i := range each {
			om, err := db.Outbox().Get(id(w, i))
			if err != nil || !bytes.Equal(om.Content, content(w, i)) {
				t.Fatalf("outbox %d.%d: %v, content %.20q", w, i, err, om.Content)
			}
			im, err := db.Inbox().Get(id(w, i))
			if err != nil || !bytes.Equal(im.Content, content(w, i)) {
				t.Fatalf("inbox %d.%d: %v, content %.20q", w, i, err, im.Content)
			}
		}
	}
}

// A message deleted from the inbox is refused as a duplicate by a batch
// as it is alone, and a write that fails in a batch fails alone.
func TestGroupCommitRefusesAlone(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	in := db.Inbox()
	if _, err := in.Add(InMsg{ID: msgID(1), Content: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := in.Delete(msgID(1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = in.Add(InMsg{ID: msgID(i + 1), Content: []byte("again")})
		})
	}
	wg.Wait()
	if !errors.Is(errs[0], ErrDuplicate) {
		t.Errorf("Add of a deleted id: %v, want ErrDuplicate", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("Add %d: %v", i+2, err)
		}
	}
	if total, _, err := in.Counts(); total != 9 || err != nil {
		t.Fatalf("inbox holds %d (%v), want 9", total, err)
	}
}

// A received message and its receipt are written together: both or none.
func TestInboxAddWithReceipt(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	msg := InMsg{ID: [16]byte{1}, From: "pc1a", Content: []byte("Subject: x\r\n\r\nhi\r\n")}
	receipt := OutMsg{ID: [16]byte{2}, To: "pc1a", Envelope: []byte("receipt"), Receipt: true}
	if _, err := db.Inbox().AddWithReceipt(msg, receipt); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Inbox().Get(msg.ID); err != nil {
		t.Fatalf("message: %v", err)
	}
	got, err := db.Outbox().Get(receipt.ID)
	if err != nil || !got.Receipt || got.State != OutQueued {
		t.Fatalf("receipt: %+v, %v", got, err)
	}
	// The same message again: a duplicate, and no second receipt.
	again := OutMsg{ID: [16]byte{3}, To: "pc1a", Envelope: []byte("receipt"), Receipt: true}
	if _, err := db.Inbox().AddWithReceipt(msg, again); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v, want ErrDuplicate", err)
	}
	if _, err := db.Outbox().Get(again.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a receipt written for a duplicate: %v", err)
	}
}

// AddAll stores every message or none.
func TestOutboxAddAll(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	a, b := OutMsg{ID: [16]byte{1}, To: "pc1a"}, OutMsg{ID: [16]byte{2}, To: "pc1b"}
	if _, err := db.Outbox().Add(b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Outbox().AddAll([]OutMsg{a, b}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddAll with a taken id: %v, want ErrDuplicate", err)
	}
	if _, err := db.Outbox().Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a copy stored by a failed AddAll: %v", err)
	}
	c := OutMsg{ID: [16]byte{3}, To: "pc1c"}
	got, err := db.Outbox().AddAll([]OutMsg{a, c})
	if err != nil || len(got) != 2 || got[0].Num == got[1].Num {
		t.Fatalf("AddAll: %+v, %v", got, err)
	}
	for _, m := range []OutMsg{a, c} {
		if _, err := db.Outbox().Get(m.ID); err != nil {
			t.Fatalf("%x not stored: %v", m.ID[:1], err)
		}
	}
}
