package store

import (
	"errors"
	"io"
	"log/slog"
	"testing"
)

func open(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestMetaSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	var got int
	if err := db.Meta().Get("traffic_in", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	if err := db.Meta().Put("traffic_in", 1234); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	defer db.Close()
	if err := db.Meta().Get("traffic_in", &got); err != nil || got != 1234 {
		t.Fatalf("after reopen: %d, %v", got, err)
	}
}

func TestContacts(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	c := db.Contacts()
	alice, err := c.Add(Contact{Address: "pc1alice", Nickname: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := c.Add(Contact{Address: "pc1bob", Nickname: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if alice.ID == 0 || bob.ID <= alice.ID || alice.Added.IsZero() {
		t.Fatalf("ids %d, %d; added %v", alice.ID, bob.ID, alice.Added)
	}
	if _, err := c.Add(Contact{Address: "pc1other", Nickname: "ALICE"}); !errors.Is(err, ErrNicknameTaken) {
		t.Fatalf("duplicate nickname (other case): %v, want ErrNicknameTaken", err)
	}
	if _, err := c.Add(Contact{Address: "pc1bob", Nickname: "robert"}); !errors.Is(err, ErrAddressTaken) {
		t.Fatalf("duplicate address: %v, want ErrAddressTaken", err)
	}
	got, err := c.ByNickname("aLiCe")
	if err != nil || got.ID != alice.ID {
		t.Fatalf("ByNickname: %+v, %v", got, err)
	}
	if got, err := c.ByAddress("pc1bob"); err != nil || got.ID != bob.ID {
		t.Fatalf("ByAddress: %+v, %v", got, err)
	}
	db.Close()

	db = open(t, dir)
	defer db.Close()
	c = db.Contacts()
	if err := c.Remove(alice.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(alice.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v, want ErrNotFound", err)
	}
	if _, err := c.ByNickname("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed contact still indexed: %v", err)
	}
	list, err := c.List()
	if err != nil || len(list) != 1 || list[0].Nickname != "bob" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	carol, err := c.Add(Contact{Address: "pc1alice", Nickname: "alice"})
	if err != nil || carol.ID <= bob.ID {
		t.Fatalf("re-add after remove: %+v, %v (ids must not be reused)", carol, err)
	}
}
