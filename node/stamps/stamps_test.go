package stamps

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/store"
)

func TestStampAcceptedOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st, err := hashcash.Mint(context.Background(), "pc1resource", 8)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{Spent: db.Stamps()}
	if _, err := c.Check(st.String(), "pc1resource", 8); err != nil {
		t.Fatalf("fresh stamp refused: %v", err)
	}
	if _, err := c.Check(st.String(), "pc1resource", 8); !errors.Is(err, hashcash.ErrSpent) {
		t.Fatalf("replay: %v, want ErrSpent", err)
	}
	db.Close()

	db, err = store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c = &Checker{Spent: db.Stamps()}
	if _, err := c.Check(st.String(), "pc1resource", 8); !errors.Is(err, hashcash.ErrSpent) {
		t.Fatalf("replay after restart: %v, want ErrSpent", err)
	}
	// A refused stamp is not spent: the policy's reason comes first.
	other, _ := hashcash.Mint(context.Background(), "pc1other", 8)
	var herr *hashcash.Error
	if _, err := c.Check(other.String(), "pc1resource", 8); !errors.As(err, &herr) || herr.Reason != hashcash.ReasonResource {
		t.Fatalf("wrong resource: %v", err)
	}
	if _, err := c.Check(other.String(), "pc1other", 8); err != nil {
		t.Fatalf("stamp refused for a wrong resource was spent: %v", err)
	}
}
