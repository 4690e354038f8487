package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The store syncs every commit (see durableMode): a record a repository has
// acknowledged survives a power cut.
func TestOpenSyncsWrites(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	if !db.db.Opts().SyncWrites {
		t.Fatal("badger SyncWrites is off: an acknowledged write may be lost in a power cut")
	}
}

// No repository's prefix is a prefix of another's, so a scan of one never
// reads another's keys.
func TestPrefixesAreDistinct(t *testing.T) {
	for i, a := range prefixes {
		for j, b := range prefixes {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("prefix %q is a prefix of %q", a, b)
			}
		}
	}
}

// testRecord is a record under "test/" with a unique index "test-name/"
// and a non-unique index "test-by-peer/<peer>/<id>".
func testRecord(id uint64, name, peer string, ttl time.Duration) record {
	key := binary.BigEndian.AppendUint64([]byte("test/"), id)
	return record{key: key, value: []byte(name), ttl: ttl, indexes: []index{
		{key: []byte("test-name/" + name), taken: ErrNicknameTaken},
		{key: binary.BigEndian.AppendUint64([]byte("test-by-peer/"+peer+"/"), id)},
	}}
}

func put(t *testing.T, db *DB, r record) error {
	t.Helper()
	return db.update(true, func(txn *badger.Txn) error { return putRecord(txn, r) })
}

// scanNames returns the values of the records indexed under prefix.
func scanNames(t *testing.T, db *DB, prefix string) []string {
	t.Helper()
	var names []string
	err := db.db.View(func(txn *badger.Txn) error {
		return scanIndex(txn, []byte(prefix), func(_, v []byte) error {
			names = append(names, string(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestRecordWithIndexes(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	for i, r := range []record{
		testRecord(1, "a", "p1", 0),
		testRecord(2, "b", "p2", 0),
		testRecord(3, "c", "p1", 0),
	} {
		if err := put(t, db, r); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := put(t, db, testRecord(4, "a", "p3", 0)); !errors.Is(err, ErrNicknameTaken) {
		t.Fatalf("taken unique index: %v, want its error", err)
	}
	db.Close()
	db = open(t, dir)
	defer db.Close()
	if got := scanNames(t, db, "test-by-peer/p1/"); fmt.Sprint(got) != "[a c]" {
		t.Errorf("scan of p1 = %q, want [a c]", got)
	}
	if got := scanNames(t, db, "test-by-peer/p3/"); got != nil {
		t.Errorf("scan of p3 = %q: the refused record left an index", got)
	}
	var v []byte
	err := db.db.View(func(txn *badger.Txn) error {
		return getByIndex(txn, []byte("test-name/b"), func(b []byte) error { v = bytes.Clone(b); return nil })
	})
	if err != nil || string(v) != "b" {
		t.Fatalf("getByIndex = %q, %v", v, err)
	}
	err = db.update(true, func(txn *badger.Txn) error {
		r := testRecord(1, "a", "p1", 0)
		return deleteRecord(txn, r.key, r.indexes[0].key, r.indexes[1].key)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scanNames(t, db, "test-by-peer/p1/"); fmt.Sprint(got) != "[c]" {
		t.Errorf("scan of p1 after delete = %q, want [c]", got)
	}
	if err := put(t, db, testRecord(5, "a", "p1", 0)); err != nil {
		t.Errorf("name free again after delete: %v", err)
	}
}

// A record and its indexes expire together.
func TestRecordExpiresWithIndexes(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	if err := put(t, db, testRecord(1, "short", "p", time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := put(t, db, testRecord(2, "long", "p", time.Hour)); err != nil {
		t.Fatal(err)
	}
	var exp [3]uint64
	err := db.db.View(func(txn *badger.Txn) error {
		r := testRecord(1, "short", "p", 0)
		for i, k := range [][]byte{r.key, r.indexes[0].key, r.indexes[1].key} {
			item, err := txn.Get(k)
			if err != nil {
				return err
			}
			exp[i] = item.ExpiresAt()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if exp[0] == 0 || exp[1] != exp[0] || exp[2] != exp[0] {
		t.Fatalf("expiry of record and indexes = %v, want one non-zero time", exp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fmt.Sprint(scanNames(t, db, "test-by-peer/p/")) != "[long]" {
		if time.Now().After(deadline) {
			t.Fatalf("scan = %q, want [long] once short expired", scanNames(t, db, "test-by-peer/p/"))
		}
		time.Sleep(50 * time.Millisecond) // waiting on the clock itself: no signal exists
	}
	if err := put(t, db, testRecord(3, "short", "p", 0)); err != nil {
		t.Errorf("unique index still taken after expiry: %v", err)
	}
}

// Concurrent Adds of distinct contacts all succeed with distinct ids; of
// concurrent Adds of one nickname (or one address) exactly one succeeds and
// the others are refused with ErrNicknameTaken (ErrAddressTaken), never with
// a transaction conflict.
func TestContactsConcurrentAdd(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	c := db.Contacts()
	const n = 50
	errs := make([]error, n)
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ct, err := c.Add(Contact{Address: fmt.Sprintf("pc1addr%d", i), Nickname: fmt.Sprintf("nick%d", i)})
			ids[i], errs[i] = ct.ID, err
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("Add %d: %v", i, err)
		}
		if seen[ids[i]] || ids[i] == 0 {
			t.Errorf("Add %d: id %d given twice or zero", i, ids[i])
		}
		seen[ids[i]] = true
	}
	if list, err := c.List(); err != nil || len(list) != n {
		t.Fatalf("List: %d contacts, %v; want %d", len(list), err, n)
	}

	for _, tc := range []struct {
		name  string
		ct    func(i int) Contact
		taken error
	}{
		{"nickname", func(i int) Contact { return Contact{Address: fmt.Sprintf("pc1same%d", i), Nickname: "Same"} }, ErrNicknameTaken},
		{"address", func(i int) Contact { return Contact{Address: "pc1one", Nickname: fmt.Sprintf("one%d", i)} }, ErrAddressTaken},
	} {
		var ok sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := range n {
			ok.Go(func() {
				_, err := c.Add(tc.ct(i))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case !errors.Is(err, tc.taken):
					t.Errorf("concurrent Add of one %s: %v, want %v", tc.name, err, tc.taken)
				}
			})
		}
		ok.Wait()
		if won != 1 {
			t.Errorf("%d concurrent Adds of one %s succeeded, want 1", won, tc.name)
		}
	}
}

// Ids go on from the last one given before a restart, also from a store
// whose counter was written before counters were Sequences.
func TestContactIDsContinueAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	a, err := db.Contacts().Add(Contact{Address: "pc1a", Nickname: "a"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, dir)
	b, err := db.Contacts().Add(Contact{Address: "pc1b", Nickname: "b"})
	if err != nil || b.ID <= a.ID {
		t.Fatalf("after restart: id %d (%v), want more than %d", b.ID, err, a.ID)
	}
	db.Close()
}

// A store written before the record pattern (index values the 8-byte id,
// counter the last id given) reads the same after an upgrade.
func TestContactsUpgrade(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	old, _ := json.Marshal(Contact{ID: 7, Address: "pc1old", Nickname: "Old"})
	err := db.db.Update(func(txn *badger.Txn) error {
		id := binary.BigEndian.AppendUint64(nil, 7)
		for k, v := range map[string][]byte{
			string(contactKey(7)): old, string(contactNickKey("Old")): id,
			string(contactAddrKey("pc1old")): id, seqContact: id,
		} {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, dir)
	defer db.Close()
	c := db.Contacts()
	if ct, err := c.ByNickname("old"); err != nil || ct.ID != 7 {
		t.Fatalf("ByNickname after upgrade: %+v, %v", ct, err)
	}
	if ct, err := c.ByAddress("pc1old"); err != nil || ct.ID != 7 {
		t.Fatalf("ByAddress after upgrade: %+v, %v", ct, err)
	}
	if ct, err := c.Add(Contact{Address: "pc1new", Nickname: "new"}); err != nil || ct.ID != 8 {
		t.Fatalf("Add after upgrade: id %d, %v; want 8", ct.ID, err)
	}
	if err := c.Remove(7); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ByNickname("old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed contact still indexed: %v", err)
	}
}
