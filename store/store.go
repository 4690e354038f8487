// Package store keeps the node's durable state in one badger database,
// reached only through typed repositories: Meta for single values, Contacts
// for the address book, and further ones as the node grows.
//
// Keys are grouped by a prefix per repository ("meta/", "contact/", …);
// a secondary index lives in the same transaction as its record.
package store

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// DB is the node's database.
type DB struct {
	db *badger.DB
}

// Open opens (creating if needed) the database in dir.
//
// Badger's defaults suit a server with gigabytes to spare (64 MiB memtables,
// a 256 MiB block cache); a node holds little data, so the tables and caches
// are small and the idle process stays in a few tens of megabytes.
func Open(dir string, logger *slog.Logger) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithValueLogFileSize(32 << 20).
		WithValueThreshold(64 << 10).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithMetricsEnabled(false).
		WithDetectConflicts(true)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &DB{db: db}, nil
}

// Close flushes and closes the database.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Sync writes everything committed so far to disk.
func (d *DB) Sync() error {
	if err := d.db.Sync(); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	return nil
}

// Compact reclaims space in the value log, as far as one pass can.
func (d *DB) Compact() error {
	for {
		err := d.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("compact store: %w", err)
		}
	}
}

// Meta returns the repository of single named values.
func (d *DB) Meta() *Meta { return &Meta{db: d.db} }

// Contacts returns the address book.
func (d *DB) Contacts() *Contacts { return &Contacts{db: d.db} }

// badgerLogger sends badger's logs to slog, its chatty info level as debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "store")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "store")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "store")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "store")
}
