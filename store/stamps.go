package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrSpent is returned by Stamps.Spend for a stamp already spent.
var ErrSpent = errors.New("stamp already spent")

// Stamps remembers spent hashcash stamps until they expire, so that each
// stamp pays for one thing only, across restarts. Entries vanish by
// themselves (badger TTL) once the stamp could no longer be accepted.
//
// A spend is not promised durable (see DB.update): a stamp spent just
// before a power cut might be accepted once more after it, which gives its
// spender one request it has paid for already.
type Stamps struct{ d *DB }

// Stamps returns the spent-stamp repository.
func (d *DB) Stamps() *Stamps { return &Stamps{d: d} }

// Spend records stamp as spent until expires. It returns ErrSpent if the
// stamp was spent before, including by a concurrent Spend.
func (s *Stamps) Spend(stamp string, expires time.Time) error {
	ttl := time.Until(expires)
	if ttl <= 0 {
		return fmt.Errorf("spend stamp: already expired at %s", expires.UTC().Format(time.RFC3339))
	}
	if err := s.d.room(); err != nil {
		return fmt.Errorf("spend stamp: %w", err)
	}
	// Not d.update: a conflict means a concurrent Spend of the same stamp
	// committed first, which is the answer, not something to retry.
	err := s.d.db.Update(func(txn *badger.Txn) error {
		key := stampKey(stamp)
		_, err := txn.Get(key)
		if err == nil {
			return ErrSpent
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.SetEntry(badger.NewEntry(key, nil).WithTTL(ttl))
	})
	if errors.Is(err, badger.ErrConflict) {
		err = ErrSpent // another Spend of the same stamp committed first
	}
	if err != nil {
		return fmt.Errorf("spend stamp: %w", err)
	}
	return nil
}

// Spent reports whether stamp has been spent and has not yet expired.
func (s *Stamps) Spent(stamp string) (bool, error) {
	err := s.d.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(stampKey(stamp))
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("look up stamp: %w", err)
	}
}
