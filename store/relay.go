package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Errors returned by the relay store, the inbox and the outbox.
var (
	// ErrDuplicate: a message with this id is held already, or was held and
	// deleted by its receipt (relay) or by the user (inbox) before it expired.
	ErrDuplicate = errors.New("duplicate message")
	// ErrOverQuota: storing the envelope would exceed the total or the
	// recipient's quota.
	ErrOverQuota = errors.New("over quota")
	// ErrExpired: the envelope's expiry time has passed.
	ErrExpired = errors.New("expired")
	// ErrWrongSecret: the deletion secret does not hash to the envelope's.
	ErrWrongSecret = errors.New("wrong deletion secret")
	// ErrClosed: the relay store has been closed.
	ErrClosed = errors.New("relay store closed")
)

// A RelayEnvelope is a sealed envelope this node holds for another node.
// The store reads nothing inside Envelope: the caller gives the fields
// relays see.
type RelayEnvelope struct {
	ID         [16]byte  // the message id
	Recipient  [32]byte  // the recipient's address (its Ed25519 key)
	SecretHash [32]byte  // SHA-256 of the deletion secret
	Expires    time.Time // the envelope's expiry; it is dropped then
	Stored     time.Time // set by Put: when this node stored it
	Size       int       // set by Put: len(Envelope)
	Envelope   []byte    // the envelope as received; nil in lists
}

// RelayLimits are the relay store's quotas, in bytes of envelopes; zero
// means no limit.
type RelayLimits struct {
	MaxBytes          int64 // all envelopes together
	MaxRecipientBytes int64 // the envelopes of one recipient
}

// RelayOptions configure OpenRelay.
type RelayOptions struct {
	Limits     RelayLimits
	SweepEvery time.Duration // how often expired envelopes are accounted for; default a minute
	MaxBatch   int           // most operations committed in one transaction; default 256
}

// Relay holds envelopes for other nodes until they expire or their
// receipt deletes them, within quotas.
//
// # Group commit
//
// Every write (Put, Delete, the expiry sweep) is handed to one goroutine,
// the batcher, which commits whatever has queued up while it was busy in
// one durable transaction, checking each operation in turn inside it, and
// then answers each caller with its own result. There is no waiting
// window: the flush of one batch is the time in which the next gathers, so
// a lone writer pays one flush and many writers share one. The batcher is
// the only writer of relay keys, so its transactions do not conflict with
// one another; a batch that conflicts all the same is run again from
// scratch, its results recomputed, so nothing is counted twice.
//
// # Quotas and expiry
//
// The bytes and count held, in all and per recipient, are counter keys
// (relay-total/, relay-use/) updated in the transaction that stores or
// deletes an envelope, so a quota check is one read, not a scan. Records
// and their recipient index vanish by themselves at expiry (badger TTL),
// which counters cannot follow; so each envelope also has a ledger entry
// under relay-exp/, ordered by expiry and without a TTL, that the sweep
// walks: every entry whose time has come has its size taken off the
// counters and is deleted with its record (if still there). Between an
// expiry and the next sweep (SweepEvery, and at open for the time the node
// was down) the counters count the expired envelopes still: a quota then
// refuses early, never admits too much.
type Relay struct {
	d        *DB
	now      func() time.Time // the clock of expiry decisions; tests set it
	maxBatch int
	limits   atomic.Pointer[RelayLimits]

	ops     chan *relayOp
	stop    chan struct{}
	stopped chan struct{}
	close   sync.Once

	lastStored int64 // batcher only: the last Stored time given, Unix ns

	commits atomic.Uint64 // transactions of puts and deletes committed, for benchmarks
}

type relayOpKind int

const (
	opPut relayOpKind = iota
	opDelete
	opSweep
)

// A relayOp is one write handed to the batcher.
type relayOp struct {
	kind   relayOpKind
	env    RelayEnvelope // opPut
	id     [16]byte      // opDelete
	secret []byte        // opDelete
	done   chan error    // buffered: the batcher never blocks on it
}

// OpenRelay starts the relay store and its batcher; Close stops them. The
// owner must Close it before closing d.
func (d *DB) OpenRelay(opts RelayOptions) *Relay {
	return d.openRelay(opts, time.Now)
}

func (d *DB) openRelay(opts RelayOptions, now func() time.Time) *Relay {
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = time.Minute
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	r := &Relay{
		d:        d,
		now:      now,
		maxBatch: opts.MaxBatch,
		ops:      make(chan *relayOp, opts.MaxBatch),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	r.SetLimits(opts.Limits)
	go r.run(opts.SweepEvery)
	return r
}

// Close stops the batcher, once it has committed the batch in hand.
// Operations not yet taken up fail with ErrClosed.
func (r *Relay) Close() {
	r.close.Do(func() { close(r.stop) })
	<-r.stopped
}

// SetLimits changes the quotas; they apply to the Puts committed next.
func (r *Relay) SetLimits(l RelayLimits) { r.limits.Store(&l) }

// Put stores env durably. It returns nil (accepted, on disk),
// ErrDuplicate, ErrOverQuota, ErrExpired, ErrClosed, the context's error,
// or a storage error. Put keeps env.Envelope until it returns: the caller
// must not change it meanwhile. If ctx ends first, the envelope may be
// stored all the same.
func (r *Relay) Put(ctx context.Context, env RelayEnvelope) error {
	err := r.do(ctx, &relayOp{kind: opPut, env: env})
	if err != nil {
		return fmt.Errorf("relay put %x: %w", env.ID[:4], err)
	}
	return nil
}

// PutBatch stores envs as Put does, in as few transactions as the batcher
// can, and returns each one's result, by index.
func (r *Relay) PutBatch(ctx context.Context, envs []RelayEnvelope) []error {
	ops := make([]*relayOp, len(envs))
	errs := make([]error, len(envs))
	for i, env := range envs {
		ops[i] = &relayOp{kind: opPut, env: env, done: make(chan error, 1)}
		if errs[i] = r.send(ctx, ops[i]); errs[i] != nil {
			ops[i] = nil
		}
	}
	for i, op := range ops {
		if op != nil {
			errs[i] = r.wait(ctx, op)
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("relay put %x: %w", envs[i].ID[:4], errs[i])
		}
	}
	return errs
}

// Delete deletes the envelope id if SHA-256 of secret is its SecretHash,
// and remembers until its expiry that it was deleted, so that a copy
// handed on by another relay is refused as a duplicate. It returns
// ErrNotFound, ErrWrongSecret, ErrClosed, or a storage error. The deletion
// is durable when Delete returns.
func (r *Relay) Delete(ctx context.Context, id [16]byte, secret []byte) error {
	err := r.do(ctx, &relayOp{kind: opDelete, id: id, secret: bytes.Clone(secret)})
	if err != nil {
		return fmt.Errorf("relay delete %x: %w", id[:4], err)
	}
	return nil
}

// Sweep accounts for every envelope expired by now: the counters lose it,
// its ledger entry and record are deleted. The batcher sweeps by itself
// every SweepEvery; Sweep is for tests and for callers that want the
// figures exact now.
func (r *Relay) Sweep(ctx context.Context) error {
	if err := r.do(ctx, &relayOp{kind: opSweep}); err != nil {
		return fmt.Errorf("relay sweep: %w", err)
	}
	return nil
}

func (r *Relay) do(ctx context.Context, op *relayOp) error {
	op.done = make(chan error, 1)
	if err := r.send(ctx, op); err != nil {
		return err
	}
	return r.wait(ctx, op)
}

func (r *Relay) send(ctx context.Context, op *relayOp) error {
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.ops <- op:
		return nil
	case <-r.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Relay) wait(ctx context.Context, op *relayOp) error {
	select {
	case err := <-op.done:
		return err
	case <-r.stopped:
		select {
		case err := <-op.done:
			return err
		default:
			return ErrClosed // queued after the batcher's last drain
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the batcher.
func (r *Relay) run(sweepEvery time.Duration) {
	defer close(r.stopped)
	r.sweep() // what expired while the node was down
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	batch := make([]*relayOp, 0, r.maxBatch)
	for {
		select {
		case <-r.stop:
			r.drain()
			return
		case <-tick.C:
			r.sweep()
		case op := <-r.ops:
			batch = append(batch[:0], op)
		gather:
			for len(batch) < r.maxBatch {
				select {
				case op := <-r.ops:
					batch = append(batch, op)
				default:
					break gather
				}
			}
			r.commit(batch)
			clear(batch)
		}
	}
}

// drain fails every operation still queued.
func (r *Relay) drain() {
	for {
		select {
		case op := <-r.ops:
			op.done <- ErrClosed
		default:
			return
		}
	}
}

// commit carries out the operations of a batch: puts and deletes in as few
// transactions as they fit in, then sweeps.
func (r *Relay) commit(batch []*relayOp) {
	var writes []*relayOp
	sweeps := 0
	for _, op := range batch {
		if op.kind == opSweep {
			sweeps++
			continue
		}
		writes = append(writes, op)
	}
	for len(writes) > 0 {
		writes = writes[r.commitSome(writes):]
	}
	if sweeps > 0 {
		err := r.sweep()
		for _, op := range batch {
			if op.kind == opSweep {
				op.done <- err
			}
		}
	}
}

// commitSome commits as many of ops as fit in one transaction, answers
// them, and returns how many it answered.
func (r *Relay) commitSome(ops []*relayOp) int {
	n := len(ops)
	for attempt := 0; ; attempt++ {
		results := make([]error, n)
		txn := r.d.db.NewTransaction(true)
		now := r.now()
		var err error
		i := 0
		for ; i < n && err == nil; i++ {
			results[i], err = r.apply(txn, ops[i], now)
		}
		if errors.Is(err, badger.ErrTxnTooBig) && i > 1 {
			txn.Discard()
			n = i - 1 // those before fitted: commit them alone
			continue
		}
		if err != nil {
			txn.Discard()
			return answer(ops[:i], err) // the operation that failed, and those before
		}
		err = txn.Commit()
		if errors.Is(err, badger.ErrConflict) && attempt < maxConflictRetries {
			continue
		}
		if err == nil {
			r.commits.Add(1)
			err = r.d.durable()
		}
		if err != nil {
			return answer(ops[:n], err)
		}
		for i, op := range ops[:n] {
			op.done <- results[i]
		}
		return n
	}
}

// answer answers every op with err and returns how many.
func answer(ops []*relayOp, err error) int {
	for _, op := range ops {
		op.done <- err
	}
	return len(ops)
}

// apply carries out op in txn. It returns the op's own result (a refusal
// leaves txn unchanged), or an error for the whole transaction.
func (r *Relay) apply(txn *badger.Txn, op *relayOp, now time.Time) (result, err error) {
	switch op.kind {
	case opPut:
		return r.put(txn, op.env, now)
	case opDelete:
		return r.delete(txn, op.id, op.secret)
	}
	return fmt.Errorf("unknown relay operation %d", op.kind), nil
}

// usage is a count of envelopes and their bytes.
type usage struct{ count, bytes int64 }

func getUsage(txn *badger.Txn, key []byte) (usage, error) {
	var u usage
	err := getValue(txn, key, func(v []byte) error {
		if len(v) != 16 {
			return fmt.Errorf("relay counter %q: %d bytes", key, len(v))
		}
		u.count = int64(binary.BigEndian.Uint64(v))
		u.bytes = int64(binary.BigEndian.Uint64(v[8:]))
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	return u, err
}

// addUsage adds count and bytes (either may be negative) to the counter
// at key, deleting it when it reaches zero.
func addUsage(txn *badger.Txn, key []byte, count, bytes int64) error {
	u, err := getUsage(txn, key)
	if err != nil {
		return err
	}
	u.count, u.bytes = max(u.count+count, 0), max(u.bytes+bytes, 0)
	if u.count == 0 {
		return txn.Delete(key)
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(u.count))
	return txn.Set(key, binary.BigEndian.AppendUint64(v, uint64(u.bytes)))
}

// absent returns ErrDuplicate if any of keys is in txn.
func absent(txn *badger.Txn, keys ...[]byte) error {
	for _, k := range keys {
		_, err := txn.Get(k)
		if err == nil {
			return ErrDuplicate
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
	}
	return nil
}

func (r *Relay) put(txn *badger.Txn, env RelayEnvelope, now time.Time) (result, err error) {
	// Peers fill the relay store: never while the disk is nearly full
	// (deletes and the sweep, which free space, go on).
	if err := r.d.room(); err != nil {
		return err, nil
	}
	ttl := time.Until(env.Expires)
	if !env.Expires.After(now) || ttl <= 0 {
		return ErrExpired, nil
	}
	key := idKey(prefixRelay, env.ID)
	ledger := timeIDKey(prefixRelayExp, env.Expires, env.ID)
	// The ledger entry is there without the record when the record has
	// expired and not been swept yet: counting it again would drift.
	switch err := absent(txn, key, doneKey(env.ID, env.SecretHash), ledger); {
	case errors.Is(err, ErrDuplicate):
		return err, nil
	case err != nil:
		return nil, err
	}
	size := int64(len(env.Envelope))
	lim := r.limits.Load()
	total, err := getUsage(txn, []byte(prefixRelayTotal))
	if err != nil {
		return nil, err
	}
	if lim.MaxBytes > 0 && total.bytes+size > lim.MaxBytes {
		return fmt.Errorf("%w: %d of %d bytes held", ErrOverQuota, total.bytes, lim.MaxBytes), nil
	}
	useKey := relayUseKey(env.Recipient)
	use, err := getUsage(txn, useKey)
	if err != nil {
		return nil, err
	}
	if lim.MaxRecipientBytes > 0 && use.bytes+size > lim.MaxRecipientBytes {
		return fmt.Errorf("%w: %d of %d bytes held for the recipient", ErrOverQuota, use.bytes, lim.MaxRecipientBytes), nil
	}

	env.Stored = r.stored(now)
	env.Size = int(size)
	rec := record{
		key:     key,
		value:   encodeRelay(env),
		indexes: []index{{key: relayToKey(env.Recipient, env.Stored, env.ID)}},
		ttl:     ttl,
	}
	if err := putRecord(txn, rec); err != nil {
		return nil, err
	}
	if err := txn.Set(ledger, encodeLedger(env)); err != nil {
		return nil, err
	}
	if err := addUsage(txn, []byte(prefixRelayTotal), 1, size); err != nil {
		return nil, err
	}
	return nil, addUsage(txn, useKey, 1, size)
}

// stored returns now as a Stored time later than any given before by this
// Relay, so that the recipient index keeps arrival order.
func (r *Relay) stored(now time.Time) time.Time {
	ns := max(int64(unixNano(now)), r.lastStored+1)
	r.lastStored = ns
	return time.Unix(0, ns).UTC()
}

func (r *Relay) delete(txn *badger.Txn, id [16]byte, secret []byte) (result, err error) {
	env, err := getRelay(txn, idKey(prefixRelay, id))
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound, nil
	}
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(secret) != env.SecretHash {
		return ErrWrongSecret, nil
	}
	if err := r.forget(txn, env); err != nil {
		return nil, err
	}
	if ttl := time.Until(env.Expires); ttl > 0 {
		return nil, txn.SetEntry(badger.NewEntry(doneKey(id, env.SecretHash), nil).WithTTL(ttl))
	}
	return nil, nil
}

// forget deletes env's record, index and ledger entry and takes it off the
// counters.
func (r *Relay) forget(txn *badger.Txn, env RelayEnvelope) error {
	err := deleteRecord(txn, idKey(prefixRelay, env.ID),
		relayToKey(env.Recipient, env.Stored, env.ID),
		timeIDKey(prefixRelayExp, env.Expires, env.ID))
	if err != nil {
		return err
	}
	if err := addUsage(txn, []byte(prefixRelayTotal), -1, -int64(env.Size)); err != nil {
		return err
	}
	return addUsage(txn, relayUseKey(env.Recipient), -1, -int64(env.Size))
}

// sweepChunk is how many expired envelopes one sweep transaction forgets.
const sweepChunk = 256

// sweep forgets every envelope whose expiry is not after the clock's now.
func (r *Relay) sweep() error {
	now := r.now()
	for {
		n := 0
		err := r.d.updateAnyway(false, func(txn *badger.Txn) error {
			var expired []RelayEnvelope
			n = 0
			err := scanPrefix(txn, []byte(prefixRelayExp), func(k, v []byte) error {
				env, err := decodeLedger(k, v)
				if err != nil {
					return err
				}
				if env.Expires.After(now) || len(expired) == sweepChunk {
					return errStopScan
				}
				expired = append(expired, env)
				return nil
			})
			if err != nil && !errors.Is(err, errStopScan) {
				return err
			}
			for _, env := range expired {
				if err := r.forgetExpired(txn, env); err != nil {
					return err
				}
			}
			n = len(expired)
			return nil
		})
		if err != nil {
			return fmt.Errorf("relay sweep: %w", err)
		}
		if n < sweepChunk {
			return nil
		}
	}
}

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")

// forgetExpired forgets the envelope of a ledger entry. Its record is
// deleted only if it is the one the entry was written for: the same id may
// have been stored again since, with another expiry.
func (r *Relay) forgetExpired(txn *badger.Txn, env RelayEnvelope) error {
	key := idKey(prefixRelay, env.ID)
	cur, err := getRelay(txn, key)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	case cur.Expires.Equal(env.Expires):
		if err := deleteRecord(txn, key, relayToKey(cur.Recipient, cur.Stored, cur.ID)); err != nil {
			return err
		}
	}
	if err := txn.Delete(timeIDKey(prefixRelayExp, env.Expires, env.ID)); err != nil {
		return err
	}
	if err := addUsage(txn, []byte(prefixRelayTotal), -1, -int64(env.Size)); err != nil {
		return err
	}
	return addUsage(txn, relayUseKey(env.Recipient), -1, -int64(env.Size))
}

// Get returns the envelope id with its bytes, or ErrNotFound, also when it
// has expired.
func (r *Relay) Get(id [16]byte) (RelayEnvelope, error) {
	var env RelayEnvelope
	err := r.d.db.View(func(txn *badger.Txn) error {
		var err error
		env, err = getRelay(txn, idKey(prefixRelay, id))
		return err
	})
	if err == nil && !env.Expires.After(r.now()) {
		err = ErrNotFound
	}
	if err != nil {
		return RelayEnvelope{}, fmt.Errorf("relay get %x: %w", id[:4], err)
	}
	return env, nil
}

// ForRecipient lists the envelopes held for rcpt, in the order they
// arrived, without their bytes (Get them one at a time to send them).
func (r *Relay) ForRecipient(rcpt [32]byte) ([]RelayEnvelope, error) {
	now := r.now()
	var out []RelayEnvelope
	err := r.d.db.View(func(txn *badger.Txn) error {
		prefix := append([]byte(prefixRelayTo), rcpt[:]...)
		return scanIndex(txn, prefix, func(k, v []byte) error {
			env, err := decodeRelay(v, false)
			copy(env.ID[:], k[len(prefixRelay):])
			if err == nil && env.Expires.After(now) {
				out = append(out, env)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("relay list for %x: %w", rcpt[:4], err)
	}
	return out, nil
}

// All lists every envelope held, without its bytes, soonest expiry first:
// for handing copies to closer nodes.
func (r *Relay) All() ([]RelayEnvelope, error) {
	now := r.now()
	var out []RelayEnvelope
	err := r.d.db.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(prefixRelayExp), func(k, v []byte) error {
			env, err := decodeLedger(k, v)
			if err == nil && env.Expires.After(now) {
				out = append(out, env)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("relay list: %w", err)
	}
	return out, nil
}

// Stats returns how many envelopes the store holds and their bytes, for
// info's relay_stored and relay_bytes. Envelopes expired since the last
// sweep are still counted.
func (r *Relay) Stats() (count, bytes int64, err error) {
	var u usage
	err = r.d.db.View(func(txn *badger.Txn) error {
		u, err = getUsage(txn, []byte(prefixRelayTotal))
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("relay stats: %w", err)
	}
	return u.count, u.bytes, nil
}

// The relay record: a version byte, then recipient (32), secret hash (32),
// expiry and storage time (Unix ns, 8 each), and the envelope.
const (
	relayRecordVersion = 1
	relayHeaderLen     = 1 + 32 + 32 + 8 + 8
)

func encodeRelay(env RelayEnvelope) []byte {
	b := make([]byte, 0, relayHeaderLen+len(env.Envelope))
	b = append(b, relayRecordVersion)
	b = append(b, env.Recipient[:]...)
	b = append(b, env.SecretHash[:]...)
	b = binary.BigEndian.AppendUint64(b, unixNano(env.Expires))
	b = binary.BigEndian.AppendUint64(b, unixNano(env.Stored))
	return append(b, env.Envelope...)
}

// decodeRelay decodes a relay record read at key relay/<id>; withEnvelope
// copies the envelope's bytes.
func decodeRelay(v []byte, withEnvelope bool) (RelayEnvelope, error) {
	var env RelayEnvelope
	if len(v) < relayHeaderLen || v[0] != relayRecordVersion {
		return env, fmt.Errorf("relay record: bad header (%d bytes)", len(v))
	}
	copy(env.Recipient[:], v[1:33])
	copy(env.SecretHash[:], v[33:65])
	env.Expires = fromUnixNano(v[65:73])
	env.Stored = fromUnixNano(v[73:81])
	env.Size = len(v) - relayHeaderLen
	if withEnvelope {
		env.Envelope = bytes.Clone(v[relayHeaderLen:])
	}
	return env, nil
}

func getRelay(txn *badger.Txn, key []byte) (RelayEnvelope, error) {
	var env RelayEnvelope
	err := getValue(txn, key, func(v []byte) error {
		var err error
		env, err = decodeRelay(v, true)
		return err
	})
	copy(env.ID[:], key[len(prefixRelay):])
	return env, err
}

func fromUnixNano(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

// The ledger entry, at relay-exp/<expires><id>: recipient (32), secret
// hash (32), storage time (8), size (8).
func encodeLedger(env RelayEnvelope) []byte {
	b := make([]byte, 0, 80)
	b = append(b, env.Recipient[:]...)
	b = append(b, env.SecretHash[:]...)
	b = binary.BigEndian.AppendUint64(b, unixNano(env.Stored))
	return binary.BigEndian.AppendUint64(b, uint64(env.Size))
}

func decodeLedger(k, v []byte) (RelayEnvelope, error) {
	var env RelayEnvelope
	k = k[len(prefixRelayExp):]
	if len(k) != 8+16 || len(v) != 80 {
		return env, fmt.Errorf("relay ledger entry: bad length (key %d, value %d)", len(k), len(v))
	}
	env.Expires = fromUnixNano(k[:8])
	copy(env.ID[:], k[8:])
	copy(env.Recipient[:], v[:32])
	copy(env.SecretHash[:], v[32:64])
	env.Stored = fromUnixNano(v[64:72])
	env.Size = int(binary.BigEndian.Uint64(v[72:]))
	return env, nil
}

// doneKey marks an envelope deleted by its secret: by id and secret hash,
// so that another envelope under the same id (one made to squat it) and
// deleted by its own secret does not bar the real one.
func doneKey(id [16]byte, secretHash [32]byte) []byte {
	return append(idKey(prefixRelayDone, id), secretHash[:]...)
}
