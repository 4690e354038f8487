package hashcash

import (
	"encoding/binary"
	"math/bits"
)

// This file holds the SHA-1 arithmetic of the minter. crypto/sha1 cannot
// resume from a saved state without copying it, so the minter hashes the
// fixed prefix of a stamp once (block) and runs only the final 64-byte
// block per try (scanState.scan, generated into scan.go).
//
// The minter lays a stamp out so that its length is 55 modulo 64: the
// final block then holds the last 55 bytes of the stamp, the 0x80 pad
// byte and the 64-bit length. The last three counter characters are
// bytes 52–54 of that block, the top three bytes of message word 13, so
// while they vary, words 0–12 stay fixed. prepare runs rounds 0–12 and
// works out the schedule words that do not depend on word 13, once per
// 262,144 tries; setHi works out the others for bytes 52–53, once per 64
// tries; and scan runs the remaining 67 rounds for each value of byte 54,
// looking up the schedule words rather than computing them.
//
// In scan each round adds the term that depends on the previous round
// last, so that a round costs a rotate and an add on the critical path;
// a try then takes about 900 instructions.

//go:generate go run gen_scan.go

const (
	_K0 = 0x5A827999
	_K1 = 0x6ED9EBA1
	_K2 = 0x8F1BBCDC
	_K3 = 0xCA62C1D6
)

// sha1IV is the initial SHA-1 state.
var sha1IV = [5]uint32{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}

// varWord is the message word that varies inside scan.
const varWord = 13

// varying reports, for each of the 80 schedule words, whether it depends
// on word varWord. gen_scan.go computes the same table.
var varying = func() (v [80]bool) {
	v[varWord] = true
	for t := 16; t < 80; t++ {
		v[t] = v[t-3] || v[t-8] || v[t-14] || v[t-16]
	}
	return v
}()

func roundK(t int) uint32 {
	switch {
	case t < 20:
		return _K0
	case t < 40:
		return _K1
	case t < 60:
		return _K2
	}
	return _K3
}

func roundF(t int, b, c, d uint32) uint32 {
	switch {
	case t < 20:
		return d ^ (b & (c ^ d))
	case t >= 40 && t < 60:
		return (b & c) | (d & (b | c))
	}
	return b ^ c ^ d
}

// block runs the SHA-1 compression function over each 64-byte block of
// p, updating h. len(p) must be a multiple of 64.
func block(h *[5]uint32, p []byte) {
	var w [80]uint32
	for ; len(p) >= 64; p = p[64:] {
		for i := range 16 {
			w[i] = binary.BigEndian.Uint32(p[4*i:])
		}
		for t := 16; t < 80; t++ {
			w[t] = bits.RotateLeft32(w[t-3]^w[t-8]^w[t-14]^w[t-16], 1)
		}
		a, b, c, d, e := h[0], h[1], h[2], h[3], h[4]
		for t := range 80 {
			tmp := bits.RotateLeft32(a, 5) + roundF(t, b, c, d) + e + w[t] + roundK(t)
			a, b, c, d, e = tmp, a, bits.RotateLeft32(b, 30), c, d
		}
		h[0] += a
		h[1] += b
		h[2] += c
		h[3] += d
		h[4] += e
	}
}

// scanState is the work shared by all tries that differ only in word
// varWord of the final block.
//
// The message schedule is linear over XOR, so for a final block whose
// word varWord is hi|d<<8, schedule word t is w[t]^digitSched[d][t],
// where w is the schedule of the block with word varWord set to hi and
// digitSched[d] that of a block whose only non-zero word is d<<8 in word
// varWord. The minter computes w for each hi (setHi, once per 64 tries),
// and the table once, so a try looks up each schedule word instead of
// computing it.
type scanState struct {
	h0 uint32    // word 0 of the state before the final block
	s  [5]uint32 // a, b, c, d, e after round varWord-1
	// cw[t] is schedule word t plus the round constant, for the words
	// t > varWord that do not depend on word varWord.
	cw [80]uint32
	// k holds the four round constants.
	k [4]uint32
	// w is the schedule of the final block with word varWord set to the
	// hi of the last setHi.
	w [80]uint32
}

// prepare sets p up for the final block blk (whose word varWord is
// ignored) following the state h.
func (p *scanState) prepare(h *[5]uint32, blk *[64]byte) {
	w := &p.w
	for i := range 16 {
		w[i] = binary.BigEndian.Uint32(blk[4*i:])
	}
	w[varWord] = 0
	for t := 16; t < 80; t++ {
		w[t] = bits.RotateLeft32(w[t-3]^w[t-8]^w[t-14]^w[t-16], 1)
	}
	for t := varWord + 1; t < 80; t++ {
		if !varying[t] {
			p.cw[t] = w[t] + roundK(t)
		}
	}
	a, b, c, d, e := h[0], h[1], h[2], h[3], h[4]
	for t := range varWord {
		tmp := bits.RotateLeft32(a, 5) + roundF(t, b, c, d) + e + w[t] + roundK(t)
		a, b, c, d, e = tmp, a, bits.RotateLeft32(b, 30), c, d
	}
	p.s = [5]uint32{a, b, c, d, e}
	p.h0 = h[0]
	p.k = [4]uint32{_K0, _K1, _K2, _K3}
}

// setHi sets word varWord of the final block to hi, apart from the
// digit that scan adds.
func (p *scanState) setHi(hi uint32) {
	w := &p.w
	w[varWord] = hi
	for t := 16; t < 80; t++ {
		if varying[t] {
			w[t] = bits.RotateLeft32(w[t-3]^w[t-8]^w[t-14]^w[t-16], 1)
		}
	}
}

// digitSched[i] is the message schedule of a block whose only non-zero
// word is word varWord, set to counterDigits[i]<<8.
var digitSched = func() (tab [len(counterDigits)][80]uint32) {
	for i := range tab {
		w := &tab[i]
		w[varWord] = uint32(counterDigits[i]) << 8
		for t := 16; t < 80; t++ {
			w[t] = bits.RotateLeft32(w[t-3]^w[t-8]^w[t-14]^w[t-16], 1)
		}
	}
	return tab
}()
