package hashcash

import (
	"crypto/sha1"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestBlockMatchesCryptoSHA1(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 55, 56, 63, 64, 119, 200, 503} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		// Pad by hand, then hash with block.
		padded := append(append([]byte(nil), msg...), 0x80)
		for len(padded)%64 != 56 {
			padded = append(padded, 0)
		}
		padded = binary.BigEndian.AppendUint64(padded, uint64(n)*8)
		h := sha1IV
		block(&h, padded)
		var got [20]byte
		for i, v := range h {
			binary.BigEndian.PutUint32(got[4*i:], v)
		}
		if want := sha1.Sum(msg); got != want {
			t.Errorf("len %d: block gives %x, crypto/sha1 %x", n, got, want)
		}
	}
}

// TestScanMatchesCryptoSHA1 checks the unrolled final-block search
// against crypto/sha1 on every candidate of many batches.
func TestScanMatchesCryptoSHA1(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, resource := range []string{"a", strings.Repeat("r", 40), strings.Repeat("x", 300)} {
		j, err := newJob(&Stamp{Bits: 6, Date: testNow, DateWidth: DateSecond, Resource: resource, Rand: "abcdefghijklmnop"})
		if err != nil {
			t.Fatal(err)
		}
		if len(j.msg)%64 != tailLen {
			t.Fatalf("stamp length %d is not %d mod 64", len(j.msg), tailLen)
		}
		var p scanState
		for range 200 {
			blk := j.tail
			for i := tailLen - counterMin; i < tailLen-innerDigits; i++ {
				blk[i] = counterDigits[r.IntN(64)]
			}
			p.prepare(&j.mid, &blk)
			d0, d1 := counterDigits[r.IntN(64)], counterDigits[r.IntN(64)]
			mask := uint32(0xFC000000) // 6 bits: about one hit per batch
			p.setHi(uint32(d0)<<24 | uint32(d1)<<16 | 0x80)
			got := p.scan(0, mask)

			want := -1
			msg := append([]byte(nil), j.msg...)
			copy(msg[len(msg)-tailLen:], blk[:tailLen])
			msg[len(msg)-3], msg[len(msg)-2] = d0, d1
			for i := range len(counterDigits) {
				msg[len(msg)-1] = counterDigits[i]
				if sum := sha1.Sum(msg); binary.BigEndian.Uint32(sum[:])&mask == 0 {
					want = i
					break
				}
			}
			if got != want {
				t.Fatalf("resource %.10q: scan found index %d, crypto/sha1 %d", resource, got, want)
			}
		}
	}
}
