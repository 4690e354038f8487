package hashcash

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMint(t *testing.T) {
	tests := []struct {
		name     string
		resource string
		bits     int
		opts     []Option
	}{
		{"one worker", "node-1", 12, []Option{WithWorkers(1)}},
		{"four workers", "node-1", 14, []Option{WithWorkers(4)}},
		{"zero bits", "r", 0, nil},
		{"ext and day date", "a@example.org", 10, []Option{WithExt("x=1;y"), WithDateWidth(DateDay)}},
		{"minute date", "b", 10, []Option{WithDateWidth(DateMinute)}},
		{"empty resource", "", 8, nil},
		{"long resource", strings.Repeat("R", 450), 10, nil},
		{"resource of 8 blocks", strings.Repeat("z", 64*6), 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]Option{WithTime(testNow)}, tt.opts...)
			s, err := Mint(context.Background(), tt.resource, tt.bits, opts...)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			text := s.String()
			if len(text)%64 != tailLen {
				t.Errorf("stamp is %d bytes, not %d mod 64", len(text), tailLen)
			}
			p := Policy{MinBits: tt.bits, Resource: tt.resource, Now: fixedClock(testNow)}
			got, err := p.Verify(text)
			if err != nil {
				t.Fatalf("Verify(%q): %v", text, err)
			}
			if *got != *s {
				t.Errorf("Verify parsed %+v, Mint returned %+v", *got, *s)
			}
			if len(s.Rand) != 16 {
				t.Errorf("rand field %q, want 16 characters", s.Rand)
			}
		})
	}
}

func TestMintDate(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("CET", 3600))
	for width, want := range map[int]string{
		DateDay:    ":260304:",
		DateMinute: ":2603040406:",
		DateSecond: ":260304040607:",
	} {
		s, err := Mint(context.Background(), "r", 1, WithTime(now), WithDateWidth(width))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s.String(), want) {
			t.Errorf("width %d: stamp %s, want date %s (UTC)", width, s, want)
		}
	}
}

func TestMintRandSource(t *testing.T) {
	r := bytes.NewReader(bytes.Repeat([]byte{0xff}, 12))
	s, err := Mint(context.Background(), "r", 4, WithRand(r), WithTime(testNow))
	if err != nil {
		t.Fatal(err)
	}
	if s.Rand != "////////////////" {
		t.Errorf("rand = %q", s.Rand)
	}
	if _, err := Mint(context.Background(), "r", 4, WithRand(bytes.NewReader(nil))); err == nil {
		t.Error("Mint with an empty random source succeeded")
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		resource string
		bits     int
		opts     []Option
	}{
		{"colon in resource", "a:b", 8, nil},
		{"space in resource", "a b", 8, nil},
		{"negative bits", "r", -1, nil},
		{"too many bits", "r", 161, nil},
		{"resource too long", strings.Repeat("r", 480), 8, nil},
		{"bad ext", "r", 8, []Option{WithExt("a:b")}},
		{"bad date width", "r", 8, []Option{WithDateWidth(8)}},
		{"year out of range", "r", 8, []Option{WithTime(time.Date(2070, 1, 1, 0, 0, 0, 0, time.UTC))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Mint(ctx, tt.resource, tt.bits, tt.opts...); err == nil {
				t.Errorf("Mint succeeded: %v", s)
			}
		})
	}
}

func TestMintCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var hashes atomic.Uint64
	done := make(chan error, 1)
	go func() {
		_, err := Mint(ctx, "r", 100, WithWorkers(2), WithHashCounter(&hashes))
		done <- err
	}()
	// Wait until the workers are under way, then cancel.
	for hashes.Load() == 0 {
		select {
		case err := <-done:
			t.Fatalf("Mint returned early: %v", err)
		default:
			runtime.Gosched()
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Mint error = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Mint did not return after cancel")
	}
}

func TestMintCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var hashes atomic.Uint64
	_, err := Mint(ctx, "r", 100, WithHashCounter(&hashes))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Mint error = %v, want context.Canceled", err)
	}
	if n := hashes.Load(); n != 0 {
		t.Errorf("Mint did %d hashes on a cancelled context", n)
	}
}

func TestMintHashCounter(t *testing.T) {
	var hashes atomic.Uint64
	for range 4 {
		if _, err := Mint(context.Background(), "r", 16, WithHashCounter(&hashes)); err != nil {
			t.Fatal(err)
		}
	}
	// Four 16-bit stamps take 4·2^16 hashes on average; the counter
	// moves in batches, so only rule out a dead counter.
	if hashes.Load() == 0 {
		t.Error("hash counter did not move")
	}
}

func TestSpeed(t *testing.T) {
	// Only a dead measurement is an error here: a loaded machine may be
	// slow by any factor. Figures come from the benchmarks.
	if rate := Speed(context.Background(), 1, 50*time.Millisecond); !(rate > 0) {
		t.Errorf("Speed = %v hashes/s, want a positive rate", rate)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	Speed(ctx, 0, time.Hour)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Speed on a cancelled context ran %v", d)
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	j, err := newJob(&Stamp{Bits: 32, Date: testNow, Resource: "r", Rand: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	var p scanState
	p.prepare(&j.mid, &j.tail)
	allocs := testing.AllocsPerRun(100, func() {
		p.setHi(0x30300080)
		p.scan(0, ^uint32(0))
	})
	if allocs != 0 {
		t.Errorf("scan allocates %.1f times per call", allocs)
	}
}

// BenchmarkMintHash measures the minter's inner loop on one goroutine:
// one op is one SHA-1 try.
func BenchmarkMintHash(b *testing.B) {
	j, err := newJob(&Stamp{Bits: MaxBits, Date: testNow, DateWidth: DateSecond,
		Resource: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", Rand: "dfW8G1KFZLjHULh1"})
	if err != nil {
		b.Fatal(err)
	}
	var p scanState
	p.prepare(&j.mid, &j.tail)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i += len(counterDigits) {
		p.setHi(uint32(counterDigits[n%64])<<24 | uint32(counterDigits[n/64%64])<<16 | 0x80)
		if p.scan(0, ^uint32(0)) >= 0 {
			b.Log("found a 32-bit candidate")
		}
		n++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hashes/s")
}

// BenchmarkMint measures whole 16-bit mints on all CPUs.
func BenchmarkMint(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Mint(context.Background(), "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 16); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWorkSkipsFalseCandidates drives the path taken for stamps of more
// than 32 bits, where a try that passes the fast test of the first hash
// word is only a candidate: with a mask that lets every try through,
// the worker must still return only a stamp that carries its bits.
func TestWorkSkipsFalseCandidates(t *testing.T) {
	j, err := newJob(&Stamp{Bits: 10, Date: testNow, DateWidth: DateSecond, Resource: "r", Rand: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	j.mask = 0
	var stop atomic.Bool
	counter, ok := j.work(0, 1, &stop, nil)
	if !ok {
		t.Fatal("work found nothing")
	}
	s := Stamp{Bits: 10, Date: testNow, DateWidth: DateSecond, Resource: "r", Rand: "abc", Counter: counter}
	if z := s.ZeroBits(); z < 10 {
		t.Errorf("work returned %s with %d zero bits, want at least 10", &s, z)
	}
}
