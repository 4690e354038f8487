package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Meta holds single named values, such as the node's creation time or its
// traffic totals, as JSON.
type Meta struct{ db *badger.DB }

func metaKey(name string) []byte { return []byte("meta/" + name) }

// Get decodes the value named name into v, or returns ErrNotFound.
func (m *Meta) Get(name string, v any) error {
	return m.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("meta %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("meta %s: %w", name, err)
		}
		return item.Value(func(b []byte) error {
			if err := json.Unmarshal(b, v); err != nil {
				return fmt.Errorf("meta %s: %w", name, err)
			}
			return nil
		})
	})
}

// Put stores v under name.
func (m *Meta) Put(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	if err := m.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(name), b) }); err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	return nil
}
