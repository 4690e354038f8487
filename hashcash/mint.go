package hashcash

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// counterDigits are the digits of the counter field, in order: the
// base64 alphabet, starting with '0' so that padding reads as leading
// zeros, as in stamps from the reference tool.
const counterDigits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/"

const (
	// outerDigits counter digits are set once per call of prepare;
	// innerDigits (bytes 52–54 of the final block) vary under it.
	outerDigits = 8
	innerDigits = 3
	// counterMin is the shortest counter Mint writes.
	counterMin = outerDigits + innerDigits
	// tailLen is the stamp length modulo 64 that Mint lays stamps out
	// for (see sha1.go).
	tailLen = 55
	// outerSpace is the number of distinct outer digit strings.
	outerSpace = 1 << (6 * outerDigits)
	// batch is the number of tries between two looks at the stop flag
	// and two updates of the hash counter.
	batch = 64 * 64
)

// randLen is the number of random bytes in the rand field: 12 bytes,
// 16 base64 characters, as the reference tool writes.
const randLen = 12

// An Option changes how Mint works.
type Option func(*mintConfig) error

type mintConfig struct {
	workers int
	ext     string
	now     time.Time
	width   int
	rand    io.Reader
	hashes  *atomic.Uint64
}

// WithWorkers sets the number of goroutines that search in parallel.
// The default, and the value used for n ≤ 0, is runtime.NumCPU().
func WithWorkers(n int) Option {
	return func(c *mintConfig) error {
		if n > 0 {
			c.workers = n
		}
		return nil
	}
}

// WithExt sets the extension field (empty by default). It must consist
// of printable ASCII other than space and colon.
func WithExt(ext string) Option {
	return func(c *mintConfig) error {
		if i := badTextChar(ext); i >= 0 {
			return fmt.Errorf("hashcash: bad character %q in extension", ext[i])
		}
		c.ext = ext
		return nil
	}
}

// WithTime sets the time written into the stamp's date field instead
// of the current time.
func WithTime(t time.Time) Option {
	return func(c *mintConfig) error {
		c.now = t
		return nil
	}
}

// WithDateWidth sets the width of the date field: DateDay (YYMMDD),
// DateMinute (YYMMDDhhmm) or DateSecond (YYMMDDhhmmss, the default).
func WithDateWidth(width int) Option {
	return func(c *mintConfig) error {
		switch width {
		case DateDay, DateMinute, DateSecond:
			c.width = width
			return nil
		}
		return fmt.Errorf("hashcash: date width %d, want 6, 10 or 12", width)
	}
}

// WithRand sets the source of the stamp's random field. The default,
// and the source used for a nil r, is crypto/rand.Reader.
func WithRand(r io.Reader) Option {
	return func(c *mintConfig) error {
		if r != nil {
			c.rand = r
		}
		return nil
	}
}

// WithHashCounter makes Mint add the number of hashes it computes to n,
// in batches of a few thousand, so that a caller can watch the rate.
func WithHashCounter(n *atomic.Uint64) Option {
	return func(c *mintConfig) error {
		c.hashes = n
		return nil
	}
}

// Mint makes a stamp for resource with at least bits leading zero bits,
// which takes about 2^bits hashes. The work is shared by several
// goroutines (see WithWorkers); all of them stop as soon as one finds a
// stamp, or within a few thousand hashes of ctx being done, in which
// case Mint returns an error that wraps ctx.Err().
//
// The resource must consist of printable ASCII other than space and
// colon. The stamp's counter is padded so that the stamp is 55 bytes
// long modulo 64, which lets each try hash a single SHA-1 block; Mint
// refuses a resource and extension so long that the stamp would exceed
// MaxLen.
func Mint(ctx context.Context, resource string, bits int, opts ...Option) (*Stamp, error) {
	cfg := mintConfig{workers: runtime.NumCPU(), width: DateSecond, rand: rand.Reader}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.now.IsZero() {
		cfg.now = time.Now()
	}
	if y := cfg.now.UTC().Year(); !canFormatYear(y) {
		return nil, fmt.Errorf("hashcash: year %d cannot be written as a two-digit year", y)
	}
	var rnd [randLen]byte
	if _, err := io.ReadFull(cfg.rand, rnd[:]); err != nil {
		return nil, fmt.Errorf("hashcash: reading random field: %w", err)
	}
	s := &Stamp{
		Bits:      bits,
		Date:      truncateDate(cfg.now, cfg.width),
		DateWidth: cfg.width,
		Resource:  resource,
		Ext:       cfg.ext,
		Rand:      base64.StdEncoding.EncodeToString(rnd[:]),
	}
	j, err := newJob(s)
	if err != nil {
		return nil, err
	}
	counter, err := j.search(ctx, cfg.workers, cfg.hashes)
	if err != nil {
		return nil, err
	}
	s.Counter = counter
	return s, nil
}

// A job is one search for a counter.
type job struct {
	bits int
	mask uint32    // mask of the leading bits of hash word 0 that must be 0
	msg  []byte    // the stamp with a counter of '0' digits
	mid  [5]uint32 // SHA-1 state after all but the final block
	tail [64]byte  // the final block, padded
}

// newJob lays out the stamp s (without counter) for searching.
func newJob(s *Stamp) (*job, error) {
	if s.Bits < 0 || s.Bits > MaxBits {
		return nil, fmt.Errorf("hashcash: %d bits out of range 0 to %d", s.Bits, MaxBits)
	}
	if i := badTextChar(s.Resource); i >= 0 {
		return nil, fmt.Errorf("hashcash: bad character %q in resource", s.Resource[i])
	}
	if !canFormatYear(s.Date.Year()) {
		return nil, fmt.Errorf("hashcash: year %d cannot be written as a two-digit year", s.Date.Year())
	}
	prefix := s.String() // ends with ':' as the counter is empty
	n := len(prefix) + counterMin
	n += (tailLen - n%64 + 64) % 64
	if n > MaxLen {
		return nil, fmt.Errorf("hashcash: resource and extension too long: stamp would be %d bytes, limit %d", n, MaxLen)
	}
	j := &job{bits: s.Bits, msg: make([]byte, n), mid: sha1IV}
	switch {
	case s.Bits == 0:
		j.mask = 0
	case s.Bits < 32:
		j.mask = ^uint32(0) << (32 - s.Bits)
	default:
		j.mask = ^uint32(0) // the rest is checked on each candidate
	}
	copy(j.msg, prefix)
	for i := len(prefix); i < n; i++ {
		j.msg[i] = counterDigits[0]
	}
	last := n - tailLen
	block(&j.mid, j.msg[:last])
	copy(j.tail[:], j.msg[last:])
	j.tail[tailLen] = 0x80
	binary.BigEndian.PutUint64(j.tail[56:], uint64(n)*8)
	return j, nil
}

// errExhausted is returned when a worker has tried all its counters.
var errExhausted = errors.New("hashcash: counter space exhausted")

// search runs workers goroutines until one finds a counter, ctx is
// done, or all counters have been tried. It returns the counter.
func (j *job) search(ctx context.Context, workers int, hashes *atomic.Uint64) (string, error) {
	if workers < 1 {
		workers = 1
	}
	var (
		stop   atomic.Bool
		once   sync.Once
		result string
		wg     sync.WaitGroup
	)
	defer context.AfterFunc(ctx, func() { stop.Store(true) })()
	if ctx.Err() != nil {
		stop.Store(true)
	}
	for w := range workers {
		wg.Go(func() {
			if c, ok := j.work(uint64(w), uint64(workers), &stop, hashes); ok {
				once.Do(func() { result = c })
				stop.Store(true)
			}
		})
	}
	wg.Wait()
	if result != "" {
		return result, nil
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("hashcash: minting %d bits: %w", j.bits, err)
	}
	return "", errExhausted
}

// work tries the outer counter values first, first+step, … until it
// finds a stamp or stop is set. It returns the counter found.
func (j *job) work(first, step uint64, stop *atomic.Bool, hashes *atomic.Uint64) (string, bool) {
	var p scanState
	blk := j.tail
	const outer = tailLen - counterMin // offset of the outer digits in blk
	for o := first; o < outerSpace; o += step {
		v := o
		for i := outer + outerDigits - 1; i >= outer; i-- {
			blk[i] = counterDigits[v%64]
			v /= 64
		}
		p.prepare(&j.mid, &blk)
		for _, d0 := range []byte(counterDigits) {
			if stop.Load() {
				return "", false
			}
			for k1, d1 := range []byte(counterDigits) {
				p.setHi(uint32(d0)<<24 | uint32(d1)<<16 | 0x80)
				for i := p.scan(0, j.mask); i >= 0; i = p.scan(i+1, j.mask) {
					// A candidate: its first 32 bits are as required.
					blk[tailLen-3], blk[tailLen-2], blk[tailLen-1] = d0, d1, counterDigits[i]
					if c, ok := j.check(&blk); ok {
						if hashes != nil { // the part of the batch done
							hashes.Add(uint64(k1*len(counterDigits) + i + 1))
						}
						return c, true
					}
				}
			}
			if hashes != nil {
				hashes.Add(batch)
			}
		}
	}
	return "", false
}

// check reports whether the stamp whose final block is blk carries
// j.bits, and if so returns its counter.
func (j *job) check(blk *[64]byte) (string, bool) {
	msg := make([]byte, len(j.msg))
	copy(msg, j.msg)
	copy(msg[len(msg)-tailLen:], blk[:tailLen])
	if ZeroBits(string(msg)) < j.bits {
		return "", false
	}
	i := len(msg) - 1
	for msg[i] != ':' {
		i--
	}
	return string(msg[i+1:]), true
}

// Speed measures the minter's hash rate: it runs workers goroutines
// (runtime.NumCPU() if workers ≤ 0) searching for an unattainable stamp
// for the duration d, or until ctx is done, and returns the number of
// hashes per second.
func Speed(ctx context.Context, workers int, d time.Duration) float64 {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	s := &Stamp{
		Bits:      MaxBits,
		Date:      time.Now().UTC().Truncate(time.Second),
		DateWidth: DateSecond,
		Resource:  "speed.test." + strconv.Itoa(workers),
		Rand:      "AAAAAAAAAAAAAAAA",
	}
	j, err := newJob(s)
	if err != nil {
		return 0 // cannot happen: the stamp is short and valid
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Uint64
	start := time.Now()
	j.search(ctx, workers, &n)
	elapsed := time.Since(start)
	if elapsed <= 0 {
		return 0
	}
	return float64(n.Load()) / elapsed.Seconds()
}
