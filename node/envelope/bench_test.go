package envelope

import (
	"bytes"
	"fmt"
	"testing"
)

func BenchmarkSeal(b *testing.B) {
	alice, bob := newID(b), newID(b)
	for _, n := range []int{1 << 10, 64 << 10, 1 << 20} {
		content := bytes.Repeat([]byte("x"), n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Seal(alice, bob.Address, KindMessage, content, testCreated, testExpires); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	alice, bob := newID(b), newID(b)
	for _, n := range []int{1 << 10, 64 << 10, 1 << 20} {
		content := bytes.Repeat([]byte("x"), n)
		env, _, err := Seal(alice, bob.Address, KindMessage, content, testCreated, testExpires)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(bob, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse measures what a relay does with each envelope before
// checking its stamp: parse it and compute its resource.
func BenchmarkParse(b *testing.B) {
	alice, bob := newID(b), newID(b)
	for _, n := range []int{1 << 10, 64 << 10, 1 << 20} {
		env, _, err := Seal(alice, bob.Address, KindMessage, bytes.Repeat([]byte("x"), n), testCreated, testExpires)
		if err != nil {
			b.Fatal(err)
		}
		env.Stamp = "1:20:260101000000:" + env.Resource() + "::AAAAAAAAAAAAAAAA:000000000000003tYL"
		wire := marshal(b, env)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				e, err := Parse(wire, 0)
				if err != nil {
					b.Fatal(err)
				}
				_ = e.Resource()
			}
		})
	}
}

func BenchmarkPublicKey(b *testing.B) {
	id := newID(b)
	for b.Loop() {
		PublicKey(id.Address)
	}
}

func BenchmarkPoint(b *testing.B) {
	id := newID(b)
	for b.Loop() {
		point(id.Address)
	}
}
