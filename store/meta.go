package store

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Meta holds single named values, such as the node's creation time or its
// traffic totals, as JSON. Its writes are not promised durable (see
// DB.update): the node must cope with finding an older value after a
// power cut.
type Meta struct{ d *DB }

// Get decodes the value named name into v, or returns ErrNotFound.
func (m *Meta) Get(name string, v any) error {
	err := m.d.db.View(func(txn *badger.Txn) error {
		return getValue(txn, metaKey(name), func(b []byte) error { return json.Unmarshal(b, v) })
	})
	if err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	return nil
}

// Put stores v under name.
func (m *Meta) Put(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	if err := m.d.update(false, func(txn *badger.Txn) error { return txn.Set(metaKey(name), b) }); err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	return nil
}
