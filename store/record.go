package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A record is one value and the secondary index keys that point at it. The
// record and its indexes are written in one transaction with one expiry, so
// an index never outlives its record nor a record its indexes.
type record struct {
	key     []byte
	value   []byte
	indexes []index
	ttl     time.Duration // zero: kept until deleted
}

// An index is a secondary key of a record; its value is the record's key.
// A unique index (taken non-nil) refuses a key that already exists with
// the error taken. A non-unique index must make its key unique itself,
// usually by ending it with the record's id, so that a scan of the index's
// prefix (scanIndex) finds every record.
type index struct {
	key   []byte
	taken error
}

// maxConflictRetries bounds the retries of a transaction that lost a race.
const maxConflictRetries = 10

// update runs fn in a read-write transaction and commits it. A transaction
// that conflicts with a concurrent one is run again, so fn sees the winner's
// writes (a unique index then fails with its own error); fn must therefore
// have no effect outside txn. When durable, update returns only once the
// commit is on disk: use it for every write whose acceptance is announced
// to anyone (a user, a peer), so that the node never forgets what it
// answered for.
func (d *DB) update(durable bool, fn func(txn *badger.Txn) error) error {
	if err := d.room(); err != nil {
		return err
	}
	return d.updateAnyway(durable, fn)
}

// updateAnyway is update even when the disk is nearly full: for writes
// that free space (deletes, the relay's sweep), which must go on then.
func (d *DB) updateAnyway(durable bool, fn func(txn *badger.Txn) error) error {
	var err error
	for range maxConflictRetries {
		if err = d.db.Update(fn); !errors.Is(err, badger.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	if durable {
		return d.durable()
	}
	return nil
}

// putRecord writes r and its indexes in txn. It fails with an index's
// taken error when a unique index key exists already.
func putRecord(txn *badger.Txn, r record) error {
	var expires uint64
	if r.ttl > 0 {
		expires = uint64(time.Now().Add(r.ttl).Unix())
	}
	for _, ix := range r.indexes {
		if ix.taken == nil {
			continue
		}
		_, err := txn.Get(ix.key)
		if err == nil {
			return ix.taken
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
	}
	set := func(k, v []byte) error {
		e := badger.NewEntry(k, v)
		e.ExpiresAt = expires
		return txn.SetEntry(e)
	}
	if err := set(r.key, r.value); err != nil {
		return err
	}
	for _, ix := range r.indexes {
		if err := set(ix.key, r.key); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecord deletes the record at key and the given index keys in txn.
func deleteRecord(txn *badger.Txn, key []byte, indexes ...[]byte) error {
	if err := txn.Delete(key); err != nil {
		return err
	}
	for _, k := range indexes {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// getValue calls fn with the value at key, or returns ErrNotFound.
func getValue(txn *badger.Txn, key []byte, fn func(value []byte) error) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(fn)
}

// getByIndex calls fn with the record that the index key points at, or
// returns ErrNotFound.
func getByIndex(txn *badger.Txn, indexKey []byte, fn func(value []byte) error) error {
	var key []byte
	if err := getValue(txn, indexKey, func(v []byte) error { key = append(key, v...); return nil }); err != nil {
		return err
	}
	return getValue(txn, key, fn)
}

// scanPrefix calls fn with the key and value of every record under prefix,
// in key order, until fn returns an error. The slices are valid only
// during the call.
func scanPrefix(txn *badger.Txn, prefix []byte, fn func(key, value []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

// scanIndex calls fn with the key and value of every record pointed at by
// an index key under prefix, in index-key order, until fn returns an error.
// An index key whose record is gone is skipped. The slices are valid only
// during the call.
func scanIndex(txn *badger.Txn, prefix []byte, fn func(key, value []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		err = getValue(txn, key, func(v []byte) error { return fn(key, v) })
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// next returns the next value, from 1, of the named counter. Counters are
// badger Sequences, one per name for the life of the DB, so concurrent
// callers never conflict. Values are never reused; a crash may skip some.
func (d *DB) next(name string) (uint64, error) {
	if err := d.room(); err != nil { // a counter leases its values with a write
		return 0, fmt.Errorf("counter %s: %w", name, err)
	}
	d.mu.Lock()
	seq, ok := d.seqs[name]
	if !ok {
		var err error
		if seq, err = d.db.GetSequence([]byte(name), seqBandwidth); err != nil {
			d.mu.Unlock()
			return 0, fmt.Errorf("counter %s: %w", name, err)
		}
		d.seqs[name] = seq
	}
	d.mu.Unlock()
	n, err := seq.Next()
	if err != nil {
		return 0, fmt.Errorf("counter %s: %w", name, err)
	}
	// A Sequence starts at 0 and stores the next value it will hand out;
	// the counters before Sequences stored the last value handed out,
	// from 1. Adding one reads both the same way.
	return n + 1, nil
}

// seqBandwidth is how many values a counter leases at a time.
const seqBandwidth = 16
