package store

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// An OutState is the state of an outgoing message.
type OutState string

// The states of an outgoing message. Delivered, expired and refused are
// final: the message is no longer due.
const (
	OutQueued    OutState = "queued"    // durable, waiting for its stamp
	OutMinting   OutState = "minting"   // its stamp is being minted
	OutSent      OutState = "sent"      // handed to the recipient or to relays
	OutDelivered OutState = "delivered" // its receipt has arrived
	OutExpired   OutState = "expired"   // it expired without a receipt
	OutRefused   OutState = "refused"   // refused for good; see Reason
)

// Final reports whether s is a final state.
func (s OutState) Final() bool {
	return s == OutDelivered || s == OutExpired || s == OutRefused
}

// An OutMsg is a message this node sends.
type OutMsg struct {
	ID          [16]byte  `json:"id"`
	Num         uint64    `json:"num"` // local number, set by Add, increasing
	To          string    `json:"to"`  // recipient address
	Subject     string    `json:"subject,omitempty"`
	Content     []byte    `json:"-"` // the RFC 5322 message; nil in lists
	Envelope    []byte    `json:"-"` // the sealed, stamped envelope once made; nil in lists
	SecretHash  [32]byte  `json:"secret_hash"`
	State       OutState  `json:"state"`
	Receipt     bool      `json:"receipt,omitempty"` // the receipt of a message received, not the user's
	Direct      bool      `json:"direct,omitempty"`  // sent to the recipient itself
	Relays      int       `json:"relays,omitempty"`  // copies placed on relays
	Reason      string    `json:"reason,omitempty"`  // why it was refused
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt"` // when it is due next, if not final
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
}

// Outbox holds the messages this node sends, from the moment the user's
// send is accepted until the user deletes them. Each message is a small
// record (out/) with its content and envelope under keys of their own, so
// that lists and state changes do not read or rewrite megabytes; an index
// by local number (out-num/) orders lists, and one by next attempt
// (out-due/), kept only while the message is not final, finds due messages
// without a scan. Every write is durable.
type Outbox struct{ d *DB }

// Outbox returns the outbox.
func (d *DB) Outbox() *Outbox { return &Outbox{d: d} }

// Add stores m, setting its Num and, when zero, its Created time and
// State (queued). It returns the stored message, once on disk, or
// ErrDuplicate if its id is taken.
func (o *Outbox) Add(m OutMsg) (OutMsg, error) {
	out, err := o.AddAll([]OutMsg{m})
	if err != nil {
		return OutMsg{}, err
	}
	return out[0], nil
}

// prepare sets what Add sets of m: its Num and, when zero, its Created
// time and State (queued).
func (o *Outbox) prepare(m *OutMsg) error {
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	if m.State == "" {
		m.State = OutQueued
	}
	num, err := o.d.next(seqOut)
	m.Num = num
	return err
}

// AddAll is Add for several messages in one write: all are stored, or
// none (ErrDuplicate if an id is taken).
func (o *Outbox) AddAll(ms []OutMsg) ([]OutMsg, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	out := make([]OutMsg, len(ms))
	size := 0
	for i, m := range ms {
		if err := o.prepare(&m); err != nil {
			return nil, fmt.Errorf("outbox add: %w", err)
		}
		out[i] = m
		size += len(m.Content) + len(m.Envelope)
	}
	err := o.d.group.commit(o.d, &groupWrite{
		size: size,
		check: func(txn *badger.Txn) error {
			for _, m := range out {
				if err := absent(txn, idKey(prefixOut, m.ID)); err != nil {
					return err
				}
			}
			return nil
		},
		put: func(txn *badger.Txn) error {
			for _, m := range out {
				if err := putOut(txn, m, nil); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("outbox add %x: %w", out[0].ID[:4], err)
	}
	return out, nil
}

// Get returns the message id with its content and envelope, or ErrNotFound.
func (o *Outbox) Get(id [16]byte) (OutMsg, error) {
	var m OutMsg
	err := o.d.db.View(func(txn *badger.Txn) error {
		var err error
		m, err = getOut(txn, id, true)
		return err
	})
	if err != nil {
		return OutMsg{}, fmt.Errorf("outbox get %x: %w", id[:4], err)
	}
	return m, nil
}

// Update changes the message id with fn and stores it durably, keeping
// its ID and Num. fn sees the message with its content and envelope; it
// may run more than once (when the transaction conflicts), so it must
// only change the message. An error from fn is returned, and nothing is
// changed.
func (o *Outbox) Update(id [16]byte, fn func(*OutMsg) error) (OutMsg, error) {
	var m OutMsg
	err := o.d.update(true, func(txn *badger.Txn) error {
		old, err := getOut(txn, id, true)
		if err != nil {
			return err
		}
		m = old
		m.Content, m.Envelope = bytes.Clone(old.Content), bytes.Clone(old.Envelope)
		if err := fn(&m); err != nil {
			return err
		}
		m.ID, m.Num = old.ID, old.Num
		return putOut(txn, m, &old)
	})
	if err != nil {
		return OutMsg{}, fmt.Errorf("outbox update %x: %w", id[:4], err)
	}
	return m, nil
}

// Delete deletes the message id, or returns ErrNotFound.
func (o *Outbox) Delete(id [16]byte) error {
	err := o.d.update(true, func(txn *badger.Txn) error {
		m, err := getOut(txn, id, false)
		if err != nil {
			return err
		}
		keys := [][]byte{idKey(prefixOutBody, id), idKey(prefixOutEnv, id), numKey(prefixOutNum, m.Num)}
		if !m.State.Final() {
			keys = append(keys, timeIDKey(prefixOutDue, m.NextAttempt, id))
		}
		return deleteRecord(txn, idKey(prefixOut, id), keys...)
	})
	if err != nil {
		return fmt.Errorf("outbox delete %x: %w", id[:4], err)
	}
	return nil
}

// List returns every message in the order of their local numbers, without
// content or envelope.
func (o *Outbox) List() ([]OutMsg, error) {
	out, err := listIndexed[OutMsg](o.d, prefixOutNum)
	if err != nil {
		return nil, fmt.Errorf("outbox list: %w", err)
	}
	return out, nil
}

// listIndexed decodes the JSON records that the index under prefix points
// at, in index order.
func listIndexed[T any](d *DB, prefix string) ([]T, error) {
	var out []T
	err := d.db.View(func(txn *badger.Txn) error {
		return scanIndex(txn, []byte(prefix), func(_, v []byte) error {
			var m T
			err := json.Unmarshal(v, &m)
			out = append(out, m)
			return err
		})
	})
	return out, err
}

// Due returns the messages not in a final state whose NextAttempt is not
// after now, soonest first, without content or envelope.
func (o *Outbox) Due(now time.Time) ([]OutMsg, error) {
	var out []OutMsg
	end := unixNano(now)
	err := o.d.db.View(func(txn *badger.Txn) error {
		err := scanIndex(txn, []byte(prefixOutDue), func(_, v []byte) error {
			var m OutMsg
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			if unixNano(m.NextAttempt) > end {
				return errStopScan
			}
			out = append(out, m)
			return nil
		})
		if errors.Is(err, errStopScan) {
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox due: %w", err)
	}
	return out, nil
}

// Counts returns how many messages are in each state.
func (o *Outbox) Counts() (map[OutState]int, error) {
	counts := map[OutState]int{}
	err := o.d.db.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(prefixOut), func(_, v []byte) error {
			var m struct {
				State OutState `json:"state"`
			}
			err := json.Unmarshal(v, &m)
			counts[m.State]++
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("outbox counts: %w", err)
	}
	return counts, nil
}

// putOut writes m in txn: its record and indexes, and its content and
// envelope unless they are those of old, the message as it was (nil for a
// new one).
func putOut(txn *badger.Txn, m OutMsg, old *OutMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	key := idKey(prefixOut, m.ID)
	if err := txn.Set(key, b); err != nil {
		return err
	}
	if old == nil {
		if err := txn.Set(numKey(prefixOutNum, m.Num), key); err != nil {
			return err
		}
	}
	if old != nil && !old.State.Final() {
		if err := txn.Delete(timeIDKey(prefixOutDue, old.NextAttempt, m.ID)); err != nil {
			return err
		}
	}
	if !m.State.Final() {
		if err := txn.Set(timeIDKey(prefixOutDue, m.NextAttempt, m.ID), key); err != nil {
			return err
		}
	}
	if err := putBlob(txn, idKey(prefixOutBody, m.ID), m.Content, old, func(o *OutMsg) []byte { return o.Content }); err != nil {
		return err
	}
	return putBlob(txn, idKey(prefixOutEnv, m.ID), m.Envelope, old, func(o *OutMsg) []byte { return o.Envelope })
}

// putBlob writes b at key unless it equals what old had; an empty b is
// deleted.
func putBlob(txn *badger.Txn, key, b []byte, old *OutMsg, was func(*OutMsg) []byte) error {
	switch {
	case old != nil && bytes.Equal(b, was(old)):
		return nil
	case len(b) == 0:
		if old == nil {
			return nil
		}
		return txn.Delete(key)
	}
	return txn.Set(key, b)
}

// getOut reads the message id; withBlobs adds its content and envelope.
func getOut(txn *badger.Txn, id [16]byte, withBlobs bool) (OutMsg, error) {
	var m OutMsg
	if err := getValue(txn, idKey(prefixOut, id), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
		return OutMsg{}, err
	}
	if !withBlobs {
		return m, nil
	}
	var err error
	if m.Content, err = getBlob(txn, idKey(prefixOutBody, id)); err != nil {
		return OutMsg{}, err
	}
	if m.Envelope, err = getBlob(txn, idKey(prefixOutEnv, id)); err != nil {
		return OutMsg{}, err
	}
	return m, nil
}

// getBlob returns a copy of the value at key, nil if there is none.
func getBlob(txn *badger.Txn, key []byte) ([]byte, error) {
	var b []byte
	err := getValue(txn, key, func(v []byte) error { b = bytes.Clone(v); return nil })
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// An InMsg is a message this node received.
type InMsg struct {
	ID       [16]byte  `json:"id"`
	Num      uint64    `json:"num"`  // local number, set by Add, increasing
	From     string    `json:"from"` // sender address
	Subject  string    `json:"subject,omitempty"`
	Content  []byte    `json:"-"` // the RFC 5322 message; nil in lists
	Size     int       `json:"size"`
	Received time.Time `json:"received"`
	Expires  time.Time `json:"expires"` // the envelope's expiry: a deleted message is a duplicate until then
	Read     bool      `json:"read"`
	// SecretHash is the envelope's: with From it tells the message from
	// another sent under the same id.
	SecretHash [32]byte `json:"secret_hash"`
}

// Inbox holds the messages this node received, each once: a message
// delivered again, by another relay or after the user deleted it (until
// its envelope expires), is a duplicate. Records are small (in/), with the
// content under a key of its own and an index by local number (in-num/).
// Every write is durable; concurrent Adds share a flush (groupCommit).
type Inbox struct{ d *DB }

// Inbox returns the inbox.
func (d *DB) Inbox() *Inbox { return &Inbox{d: d} }

// inboxForget is how long a deleted message without an expiry is
// remembered as a duplicate.
const inboxForget = 30 * 24 * time.Hour

// Add stores m, setting its Num, Size and, when zero, its Received time.
// It returns the stored message, once on disk, or ErrDuplicate if a
// message with its id is in the inbox or was deleted before its expiry.
func (in *Inbox) Add(m InMsg) (InMsg, error) {
	return in.add(m, nil)
}

// AddWithReceipt is Add, and in the same transaction puts receipt (the
// receipt of m, to be sent) in the outbox: a message is never in the
// inbox, after a crash either, without its receipt queued.
func (in *Inbox) AddWithReceipt(m InMsg, receipt OutMsg) (InMsg, error) {
	if err := in.d.Outbox().prepare(&receipt); err != nil {
		return InMsg{}, fmt.Errorf("inbox add %x: %w", m.ID[:4], err)
	}
	return in.add(m, &receipt)
}

func (in *Inbox) add(m InMsg, receipt *OutMsg) (InMsg, error) {
	if m.Received.IsZero() {
		m.Received = time.Now().UTC()
	}
	m.Size = len(m.Content)
	num, err := in.d.next(seqIn)
	if err != nil {
		return InMsg{}, fmt.Errorf("inbox add %x: %w", m.ID[:4], err)
	}
	m.Num = num
	b, err := json.Marshal(m)
	if err != nil {
		return InMsg{}, fmt.Errorf("inbox add %x: %w", m.ID[:4], err)
	}
	err = in.d.group.commit(in.d, &groupWrite{
		size: len(m.Content),
		check: func(txn *badger.Txn) error {
			if receipt != nil {
				if err := absent(txn, idKey(prefixOut, receipt.ID)); err != nil {
					return err
				}
			}
			return absent(txn, idKey(prefixIn, m.ID), idKey(prefixInGone, m.ID))
		},
		put: func(txn *badger.Txn) error {
			key := idKey(prefixIn, m.ID)
			if err := putRecord(txn, record{key: key, value: b, indexes: []index{{key: numKey(prefixInNum, m.Num)}}}); err != nil {
				return err
			}
			if receipt != nil {
				if err := putOut(txn, *receipt, nil); err != nil {
					return err
				}
			}
			return txn.Set(idKey(prefixInBody, m.ID), m.Content)
		},
	})
	if err != nil {
		return InMsg{}, fmt.Errorf("inbox add %x: %w", m.ID[:4], err)
	}
	return m, nil
}

// Get returns the message id with its content, or ErrNotFound.
func (in *Inbox) Get(id [16]byte) (InMsg, error) {
	var m InMsg
	err := in.d.db.View(func(txn *badger.Txn) error {
		if err := getValue(txn, idKey(prefixIn, id), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		var err error
		m.Content, err = getBlob(txn, idKey(prefixInBody, id))
		return err
	})
	if err != nil {
		return InMsg{}, fmt.Errorf("inbox get %x: %w", id[:4], err)
	}
	return m, nil
}

// SetRead marks the message id read or unread.
func (in *Inbox) SetRead(id [16]byte, read bool) error {
	err := in.d.update(true, func(txn *badger.Txn) error {
		var m InMsg
		key := idKey(prefixIn, id)
		if err := getValue(txn, key, func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		if m.Read == read {
			return nil
		}
		m.Read = read
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return txn.Set(key, b)
	})
	if err != nil {
		return fmt.Errorf("inbox mark %x: %w", id[:4], err)
	}
	return nil
}

// Delete deletes the message id, or returns ErrNotFound. The id is
// remembered until the message's expiry, so that it is not delivered again.
func (in *Inbox) Delete(id [16]byte) error {
	err := in.d.update(true, func(txn *badger.Txn) error {
		var m InMsg
		if err := getValue(txn, idKey(prefixIn, id), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		if err := deleteRecord(txn, idKey(prefixIn, id), numKey(prefixInNum, m.Num), idKey(prefixInBody, id)); err != nil {
			return err
		}
		ttl := time.Until(m.Expires)
		if m.Expires.IsZero() {
			ttl = inboxForget
		}
		if ttl <= 0 {
			return nil
		}
		return txn.SetEntry(badger.NewEntry(idKey(prefixInGone, id), nil).WithTTL(ttl))
	})
	if err != nil {
		return fmt.Errorf("inbox delete %x: %w", id[:4], err)
	}
	return nil
}

// List returns every message in the order they arrived, without content.
func (in *Inbox) List() ([]InMsg, error) {
	out, err := listIndexed[InMsg](in.d, prefixInNum)
	if err != nil {
		return nil, fmt.Errorf("inbox list: %w", err)
	}
	return out, nil
}

// Counts returns how many messages the inbox holds and how many of them
// are unread.
func (in *Inbox) Counts() (total, unread int, err error) {
	err = in.d.db.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(prefixIn), func(_, v []byte) error {
			var m struct {
				Read bool `json:"read"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			total++
			if !m.Read {
				unread++
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("inbox counts: %w", err)
	}
	return total, unread, nil
}

// groupCommit lets concurrent Adds of the outbox and the inbox share one
// durable transaction, and so one flush, instead of one each (badger syncs
// once per transaction, whatever the number of writers).
//
// A writer queues its write; if no one is committing, it becomes the
// leader: it takes what is queued (up to maxGroupBytes), commits it in one
// transaction, checking each write in turn inside it, answers each writer
// with its own result, and hands the lead to the first writer that queued
// meanwhile, or ends. There is no waiting window: the flush of one batch is
// the time in which the next gathers, so a lone writer pays one flush and
// many writers share one. No goroutine outlives its caller, and every
// caller returns only once its write is on disk (or has failed).
//
// A write whose check fails (a duplicate id) is refused alone; the checks
// run inside the transaction, so two writes of one id in one batch are
// refused as they would be one after the other. Should the transaction
// fail as a whole (a conflict that persists, a write that does not fit),
// each of its writes is committed again on its own.
type groupCommit struct {
	mu    sync.Mutex
	queue []*groupWrite
	busy  bool // a leader is committing

	commits atomic.Uint64 // batches committed, for tests
}

// A groupWrite is one write handed to groupCommit.
type groupWrite struct {
	size  int                         // bytes of values, to bound a batch
	check func(txn *badger.Txn) error // reads only: an error refuses this write
	put   func(txn *badger.Txn) error // the writes
	done  chan groupResult            // buffered: never blocks its sender
}

type groupResult struct {
	err  error
	lead bool // the writer is the leader now; its result follows
}

// maxGroupBytes bounds the values of one batch, well within what a badger
// transaction takes with the store's 4 MiB memtables (15% of them), so
// that a batch of small messages does not fail as too big. Values of 64
// KiB and more go to the value log and count little; a batch always takes
// one write, however large.
const maxGroupBytes = 256 << 10

// commit commits w durably, in a batch with the writes queued beside it,
// and returns its own result.
func (g *groupCommit) commit(d *DB, w *groupWrite) error {
	w.done = make(chan groupResult, 1)
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.busy {
		g.mu.Unlock()
		if r := <-w.done; !r.lead {
			return r.err
		}
		g.mu.Lock()
	}
	g.busy = true
	n, size := 0, 0
	for n < len(g.queue) && (n == 0 || size+min(g.queue[n].size, 64<<10) <= maxGroupBytes) {
		size += min(g.queue[n].size, 64<<10)
		n++
	}
	batch := g.queue[:n:n]
	g.queue = append([]*groupWrite(nil), g.queue[n:]...)
	g.mu.Unlock()

	d.commitBatch(batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- groupResult{lead: true}
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	return (<-w.done).err
}

// commitBatch commits the writes of batch in one durable transaction, or
// each on its own if that fails, and answers each writer.
func (d *DB) commitBatch(batch []*groupWrite) {
	errs := make([]error, len(batch))
	err := d.room()
	if err == nil {
		for range maxConflictRetries {
			err = d.db.Update(func(txn *badger.Txn) error {
				for i, w := range batch {
					if errs[i] = w.check(txn); errs[i] != nil {
						continue
					}
					if err := w.put(txn); err != nil {
						return err
					}
				}
				return nil
			})
			if !errors.Is(err, badger.ErrConflict) {
				break
			}
		}
		if err == nil {
			d.group.commits.Add(1)
			err = d.durable()
		} else if len(batch) > 1 {
			for _, w := range batch {
				w.done <- groupResult{err: d.update(true, func(txn *badger.Txn) error {
					if err := w.check(txn); err != nil {
						return err
					}
					return w.put(txn)
				})}
			}
			return
		}
	}
	for i, w := range batch {
		w.done <- groupResult{err: cmp.Or(err, errs[i])}
	}
}
