package store

import (
	"errors"
	"testing"
)

func TestMailboxes(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	b := db.Mailboxes()
	box, err := b.Create("Work", "")
	if err != nil || box.UIDNext != 1 || box.UIDValidity == 0 {
		t.Fatalf("create: %+v, %v", box, err)
	}
	if _, err := b.Create("Work", ""); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("create twice: %v; want ErrMailboxExists", err)
	}
	added, after, err := b.AddMessages("Work", []MailboxMsg{
		{Size: 3, Content: []byte("one")},
		{Ref: [16]byte{1}, Size: 9, Flags: []string{`\Seen`}},
	})
	if err != nil || added[0].UID != 1 || added[1].UID != 2 || after.UIDNext != 3 {
		t.Fatalf("add: %+v, %+v, %v", added, after, err)
	}
	if c, err := b.Content(box.ID, 1); err != nil || string(c) != "one" {
		t.Fatalf("content: %q, %v", c, err)
	}
	if err := b.SetFlags(box.ID, map[uint32][]string{2: {`\Flagged`}, 7: {`\Seen`}}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteMessages(box.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopened: the UIDs, flags and counter are kept; a deleted UID is not reused.
	db = open(t, dir)
	b = db.Mailboxes()
	msgs, err := b.Messages(box.ID)
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].Flags[0] != `\Flagged` || msgs[0].Held() {
		t.Fatalf("messages after reopen: %+v, %v", msgs, err)
	}
	added, _, _ = b.AddMessages("Work", []MailboxMsg{{Content: []byte("three")}})
	if added[0].UID != 3 {
		t.Errorf("new UID %d after reopen, want 3", added[0].UID)
	}
	if err := b.Rename("Work", "Old/Work"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get("Old/Work"); err != nil || got.ID != box.ID || got.UIDValidity != box.UIDValidity {
		t.Fatalf("renamed: %+v, %v", got, err)
	}
	if err := b.Delete("Old/Work"); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := b.Messages(box.ID); len(msgs) != 0 {
		t.Errorf("messages of a deleted mailbox remain: %+v", msgs)
	}
	again, err := b.Create("Old/Work", "")
	if err != nil || again.UIDValidity == box.UIDValidity || again.ID == box.ID {
		t.Errorf("made again: %+v, %v; want a new UIDVALIDITY and id", again, err)
	}
}
