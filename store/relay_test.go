package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// testClock is a clock that tests set.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func openRelay(t testing.TB, db *DB, lim RelayLimits, clock *testClock) *Relay {
	t.Helper()
	r := db.openRelay(RelayOptions{Limits: lim}, clock.now)
	t.Cleanup(r.Close)
	return r
}

// testEnvelope is an envelope of size bytes for rcpt, with id n and the
// deletion secret "secret-n".
func testEnvelope(n int, rcpt byte, size int, expires time.Time) RelayEnvelope {
	env := RelayEnvelope{Expires: expires, Envelope: make([]byte, size)}
	env.ID[0], env.ID[1] = byte(n>>8), byte(n)
	env.Recipient[0] = rcpt
	env.SecretHash = sha256.Sum256(secretOf(n))
	for i := range env.Envelope {
		env.Envelope[i] = byte(n + i)
	}
	return env
}

func secretOf(n int) []byte { return fmt.Appendf(nil, "secret-%d", n) }

func ids(envs []RelayEnvelope) []int {
	var out []int
	for _, e := range envs {
		out = append(out, int(e.ID[0])<<8|int(e.ID[1]))
	}
	return out
}

func wantStats(t *testing.T, r *Relay, count, bytes int64) {
	t.Helper()
	c, b, err := r.Stats()
	if err != nil || c != count || b != bytes {
		t.Fatalf("Stats = %d envelopes, %d bytes, %v; want %d, %d", c, b, err, count, bytes)
	}
}

func TestRelayPutGetList(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	clock := newTestClock()
	r := db.openRelay(RelayOptions{}, clock.now)
	ctx := context.Background()
	exp := clock.now().Add(time.Hour)
	for i, n := range []int{5, 1, 4, 2, 3} {
		rcpt := byte(1 + i%2) // 5, 4, 3 for recipient 1; 1, 2 for recipient 2
		if err := r.Put(ctx, testEnvelope(n, rcpt, 100+n, exp)); err != nil {
			t.Fatalf("Put %d: %v", n, err)
		}
	}
	if err := r.Put(ctx, testEnvelope(4, 2, 10, exp)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Put of a held id: %v, want ErrDuplicate", err)
	}
	want := testEnvelope(4, 1, 104, exp)
	got, err := r.Get(want.ID)
	if err != nil || string(got.Envelope) != string(want.Envelope) || got.Size != 104 ||
		got.Recipient != want.Recipient || got.SecretHash != want.SecretHash || !got.Expires.Equal(exp) ||
		got.Stored.IsZero() {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	wantStats(t, r, 5, 105+101+104+102+103)
	r.Close()
	db.Close()

	db = open(t, dir)
	defer db.Close()
	r = openRelay(t, db, RelayLimits{}, clock)
	var rcpt1 [32]byte
	rcpt1[0] = 1
	list, err := r.ForRecipient(rcpt1)
	if err != nil || fmt.Sprint(ids(list)) != "[5 4 3]" {
		t.Fatalf("ForRecipient after restart = %v, %v; want [5 4 3], in arrival order", ids(list), err)
	}
	if list[0].Envelope != nil || list[0].Size != 105 {
		t.Errorf("listed envelope: %d bytes given, Size %d; want none, 105", len(list[0].Envelope), list[0].Size)
	}
	all, err := r.All()
	if err != nil || len(all) != 5 {
		t.Fatalf("All = %v, %v", ids(all), err)
	}
	wantStats(t, r, 5, 515)
	if err := r.Put(ctx, testEnvelope(5, 1, 105, exp)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Put of a held id after restart: %v, want ErrDuplicate", err)
	}
}

func TestRelayQuotaAndDelete(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := openRelay(t, db, RelayLimits{MaxBytes: 1000, MaxRecipientBytes: 600}, clock)
	ctx := context.Background()
	exp := clock.now().Add(time.Hour)
	for n, rcpt := range []byte{1, 1, 1, 2, 2} {
		err := r.Put(ctx, testEnvelope(n, rcpt, 250, exp))
		switch {
		case n == 2:
			if !errors.Is(err, ErrOverQuota) {
				t.Fatalf("Put %d: %v, want ErrOverQuota", n, err)
			}
		case err != nil:
			t.Fatalf("Put %d: %v", n, err)
		}
	}
	wantStats(t, r, 4, 1000) // 0, 1 for recipient 1; 3, 4 for recipient 2
	if err := r.Put(ctx, testEnvelope(9, 3, 1, exp)); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("Put over the total: %v, want ErrOverQuota", err)
	}
	if err := r.Delete(ctx, testEnvelope(0, 1, 0, exp).ID, secretOf(1)); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("Delete with another secret: %v, want ErrWrongSecret", err)
	}
	if err := r.Delete(ctx, testEnvelope(0, 1, 0, exp).ID, secretOf(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, testEnvelope(0, 1, 0, exp).ID, secretOf(0)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	wantStats(t, r, 3, 750)
	if err := r.Put(ctx, testEnvelope(2, 1, 250, exp)); err != nil {
		t.Fatalf("Put after Delete freed the recipient's quota: %v", err)
	}
	if err := r.Put(ctx, testEnvelope(0, 1, 250, exp)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Put of an id deleted by its receipt: %v, want ErrDuplicate", err)
	}
	r.SetLimits(RelayLimits{})
	if err := r.Put(ctx, testEnvelope(9, 3, 251, exp)); err != nil {
		t.Fatalf("Put once the limits are lifted: %v", err)
	}
	if err := r.Put(ctx, testEnvelope(10, 3, 1, clock.now())); !errors.Is(err, ErrExpired) {
		t.Fatalf("Put of an expired envelope: %v, want ErrExpired", err)
	}
}

// relayKeys returns how many keys of the relay's records, recipient index
// and ledger badger holds.
func relayKeys(t *testing.T, db *DB) (records, index, ledger int) {
	t.Helper()
	err := db.db.View(func(txn *badger.Txn) error {
		for _, p := range []struct {
			prefix string
			n      *int
		}{{prefixRelay, &records}, {prefixRelayTo, &index}, {prefixRelayExp, &ledger}} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p.prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				*p.n++
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return records, index, ledger
}

// Expiry is decided by the relay's clock: an expired envelope is no longer
// listed, and the sweep takes it off the counters, freeing its quota, and
// deletes its record, index and ledger entry.
func TestRelayExpirySweep(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := openRelay(t, db, RelayLimits{MaxRecipientBytes: 300}, clock)
	ctx := context.Background()
	if err := r.Put(ctx, testEnvelope(1, 1, 200, clock.now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, testEnvelope(2, 2, 100, clock.now().Add(3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Hour)
	if _, err := r.Get(testEnvelope(1, 1, 0, time.Time{}).ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an expired envelope: %v, want ErrNotFound", err)
	}
	if all, err := r.All(); err != nil || fmt.Sprint(ids(all)) != "[2]" {
		t.Fatalf("All = %v, %v; want [2]", ids(all), err)
	}
	wantStats(t, r, 2, 300) // not swept yet
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	wantStats(t, r, 1, 100)
	if rec, ix, led := relayKeys(t, db); rec != 1 || ix != 1 || led != 1 {
		t.Fatalf("after the sweep: %d records, %d index keys, %d ledger entries; want 1 each", rec, ix, led)
	}
	if err := r.Put(ctx, testEnvelope(3, 1, 300, clock.now().Add(time.Hour))); err != nil {
		t.Fatalf("Put in the quota the sweep freed: %v", err)
	}
}

// The record and its index vanish by themselves at expiry (badger TTL),
// and the sweep then accounts for them from the ledger.
func TestRelayTTL(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	r := db.openRelay(RelayOptions{}, time.Now)
	defer r.Close()
	ctx := context.Background()
	short := time.Now().Add(1500 * time.Millisecond)
	if err := r.Put(ctx, testEnvelope(1, 1, 100, short)); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, testEnvelope(2, 1, 100, time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, ix, _ := relayKeys(t, db)
		if rec == 1 && ix == 1 && time.Now().After(short) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records, %d index keys 10 s after the first expired; want 1 each", rec, ix)
		}
		time.Sleep(50 * time.Millisecond) // waiting on the clock itself: no signal exists
	}
	wantStats(t, r, 2, 200)
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	wantStats(t, r, 1, 100)
	if _, _, led := relayKeys(t, db); led != 1 {
		t.Fatalf("%d ledger entries after the sweep, want 1", led)
	}
}

// Concurrent Puts to one recipient fill its quota exactly, and of
// concurrent Puts of one id exactly one is accepted.
func TestRelayConcurrentPuts(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := openRelay(t, db, RelayLimits{MaxRecipientBytes: 100 * 37}, clock)
	ctx := context.Background()
	exp := clock.now().Add(time.Hour)
	var accepted, over, dup atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				err := r.Put(ctx, testEnvelope(g*25+i, 1, 100, exp))
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, ErrOverQuota):
					over.Add(1)
				default:
					t.Error(err)
				}
			}
			err := r.Put(ctx, testEnvelope(1000, 2, 10, exp))
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, ErrDuplicate):
				dup.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 38 || over.Load() != 200-37 || dup.Load() != 7 {
		t.Fatalf("accepted %d, over quota %d, duplicate %d; want 38, 163, 7",
			accepted.Load(), over.Load(), dup.Load())
	}
	wantStats(t, r, 38, 3710)
}

// A batch larger than one transaction can hold is split, and every Put of
// it is accepted.
func TestRelayBatchLargerThanATransaction(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := openRelay(t, db, RelayLimits{}, clock)
	envs := make([]RelayEnvelope, 60) // 60 × 32 KiB: twice what a transaction holds
	for i := range envs {
		envs[i] = testEnvelope(i, byte(i%3), 32<<10, clock.now().Add(time.Hour))
	}
	for i, err := range r.PutBatch(context.Background(), envs) {
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	wantStats(t, r, 60, 60*32<<10)
}

func TestRelayClosed(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := db.openRelay(RelayOptions{}, clock.now)
	r.Close()
	r.Close()
	if err := r.Put(context.Background(), testEnvelope(1, 1, 10, clock.now().Add(time.Hour))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
}
