package identity

import (
	"errors"
	"fmt"
	"strings"
)

// This file implements Bech32m (BIP 350) for the node address. Bech32m is a
// BCH code over a 32-character alphabet: it detects any error affecting up to
// four characters in strings of up to 89 characters, which is exactly what a
// typed or pasted address needs, and it is case-insensitive.

const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

const bech32mConst = 0x2bc830a3

var charsetRev = func() [128]int8 {
	var r [128]int8
	for i := range r {
		r[i] = -1
	}
	for i, c := range charset {
		r[c] = int8(i)
	}
	return r
}()

func polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		b := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := 0; i < 5; i++ {
			if (b>>uint(i))&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}

func hrpExpand(hrp string) []byte {
	out := make([]byte, 0, len(hrp)*2+1)
	for i := 0; i < len(hrp); i++ {
		out = append(out, hrp[i]>>5)
	}
	out = append(out, 0)
	for i := 0; i < len(hrp); i++ {
		out = append(out, hrp[i]&31)
	}
	return out
}

func checksum(hrp string, data []byte) []byte {
	values := append(hrpExpand(hrp), data...)
	values = append(values, 0, 0, 0, 0, 0, 0)
	mod := polymod(values) ^ bech32mConst
	out := make([]byte, 6)
	for i := range out {
		out[i] = byte(mod>>uint(5*(5-i))) & 31
	}
	return out
}

// encodeBech32m encodes 5-bit groups with the human-readable part hrp.
func encodeBech32m(hrp string, data []byte) string {
	var b strings.Builder
	b.Grow(len(hrp) + 1 + len(data) + 6)
	b.WriteString(hrp)
	b.WriteByte('1')
	for _, d := range data {
		b.WriteByte(charset[d])
	}
	for _, d := range checksum(hrp, data) {
		b.WriteByte(charset[d])
	}
	return b.String()
}

var errMixedCase = errors.New("mixed upper and lower case")

// decodeBech32m decodes s, returning its human-readable part and its 5-bit
// groups without the checksum.
func decodeBech32m(s string) (string, []byte, error) {
	if strings.ToLower(s) != s && strings.ToUpper(s) != s {
		return "", nil, errMixedCase
	}
	s = strings.ToLower(s)
	pos := strings.LastIndexByte(s, '1')
	if pos < 1 {
		return "", nil, errors.New("missing prefix")
	}
	if pos+7 > len(s) {
		return "", nil, errors.New("too short")
	}
	hrp := s[:pos]
	for i := 0; i < len(hrp); i++ {
		if hrp[i] < 33 || hrp[i] > 126 {
			return "", nil, fmt.Errorf("invalid character %q in prefix", hrp[i])
		}
	}
	data := make([]byte, 0, len(s)-pos-1)
	for i := pos + 1; i < len(s); i++ {
		c := s[i]
		if c >= 128 || charsetRev[c] < 0 {
			return "", nil, fmt.Errorf("invalid character %q at position %d", c, i+1)
		}
		data = append(data, byte(charsetRev[c]))
	}
	if polymod(append(hrpExpand(hrp), data...)) != bech32mConst {
		return "", nil, errors.New("checksum mismatch (a character is mistyped)")
	}
	return hrp, data[:len(data)-6], nil
}

// convertBits regroups bits from groups of from to groups of to bits.
// With pad false, leftover bits must be zero padding of fewer than from bits.
func convertBits(in []byte, from, to uint, pad bool) ([]byte, error) {
	var acc uint32
	var bits uint
	maxv := uint32(1)<<to - 1
	out := make([]byte, 0, len(in)*int(from)/int(to)+1)
	for _, v := range in {
		acc = acc<<from | uint32(v)
		bits += from
		for bits >= to {
			bits -= to
			out = append(out, byte(acc>>bits&maxv))
		}
	}
	if pad {
		if bits > 0 {
			out = append(out, byte(acc<<(to-bits)&maxv))
		}
	} else if bits >= from || acc<<(to-bits)&maxv != 0 {
		return nil, errors.New("invalid padding")
	}
	return out, nil
}
