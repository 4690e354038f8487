package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestStampSpentOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	const stamp = "1:20:261122:pc1x::abc:def"
	exp := time.Now().Add(48 * time.Hour)
	if err := db.Stamps().Spend(stamp, exp); err != nil {
		t.Fatal(err)
	}
	if err := db.Stamps().Spend(stamp, exp); !errors.Is(err, ErrSpent) {
		t.Fatalf("second Spend: %v, want ErrSpent", err)
	}
	db.Close()
	db = open(t, dir)
	defer db.Close()
	if err := db.Stamps().Spend(stamp, exp); !errors.Is(err, ErrSpent) {
		t.Fatalf("Spend after restart: %v, want ErrSpent", err)
	}
	if spent, err := db.Stamps().Spent("1:20:261122:pc1x::abc:other"); err != nil || spent {
		t.Fatalf("other stamp: spent=%v err=%v", spent, err)
	}
	if err := db.Stamps().Spend("old", time.Now().Add(-time.Second)); err == nil {
		t.Fatal("expired stamp recorded")
	}
}

func TestConcurrentSpendAcceptsOne(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Stamps().Spend("1:20:261122:r::x:1", time.Now().Add(time.Hour))
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, ErrSpent) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d concurrent spends accepted, want 1", ok)
	}
}

func TestSpentStampExpires(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	// Badger's TTL has a resolution of one second.
	if err := db.Stamps().Spend("short", time.Now().Add(1100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		spent, err := db.Stamps().Spent("short")
		if err != nil {
			t.Fatal(err)
		}
		if !spent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("spent stamp did not expire")
		}
		time.Sleep(50 * time.Millisecond) // waiting on the clock itself: no signal exists
	}
}
