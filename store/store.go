// Package store keeps the node's durable state in one badger database,
// reached only through typed repositories: Meta for single values, Contacts
// for the address book, and further ones as the node grows.
//
// Keys are grouped by a prefix per repository, all listed in keys.go; a
// record and its secondary indexes are written in one transaction with one
// expiry (record.go).
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// DB is the node's database.
type DB struct {
	db         *badger.DB
	syncWrites bool                         // badger syncs every commit; see durableMode
	space      atomic.Pointer[func() error] // see SetSpaceCheck

	mu   sync.Mutex
	seqs map[string]*badger.Sequence // counters, by key

	commits    atomic.Uint64 // durable commits so far, without SyncWrites
	syncMu     sync.Mutex    // held while syncing after a commit
	syncedUpTo uint64        // commits known on disk; under syncMu

	group groupCommit // the outbox's and inbox's Adds (messages.go)
}

// Open opens (creating if needed) the database in dir.
//
// Badger's defaults suit a server with gigabytes to spare (64 MiB memtables,
// a 256 MiB block cache); a node holds little data, so the tables and caches
// are small and the idle process stays in a few tens of megabytes. Every
// commit is synced to disk before it returns (durableMode says why).
func Open(dir string, logger *slog.Logger) (*DB, error) {
	return openDB(dir, logger, durableMode)
}

func openDB(dir string, logger *slog.Logger, syncWrites bool) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(syncWrites).
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
	d := &DB{db: db, syncWrites: syncWrites, seqs: map[string]*badger.Sequence{}}
	if err := d.update(true, upgradeContactIndexes); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: upgrade: %w", dir, err)
	}
	return d, nil
}

// Close flushes and closes the database.
func (d *DB) Close() error {
	d.mu.Lock()
	var errs []error
	for name, seq := range d.seqs {
		if err := seq.Release(); err != nil {
			errs = append(errs, fmt.Errorf("counter %s: %w", name, err))
		}
	}
	clear(d.seqs)
	d.mu.Unlock()
	if err := d.db.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
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

// Compact reclaims space in the value log, as far as one pass can. It
// rewrites what it keeps, so it too waits while the disk is low.
func (d *DB) Compact() error {
	if err := d.room(); err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
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
func (d *DB) Meta() *Meta { return &Meta{d: d} }

// Contacts returns the address book.
func (d *DB) Contacts() *Contacts { return &Contacts{d: d} }

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
