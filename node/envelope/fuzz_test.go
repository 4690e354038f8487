package envelope

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, refuses only with ErrFormat or
// ErrTooLarge, and that what it accepts marshals back to the same bytes
// (the format has one encoding of each envelope).
func FuzzParse(f *testing.F) {
	vector := readVector(f)
	f.Add(vector)
	f.Add(vector[:len(vector)-1])
	f.Add(append(bytes.Clone(vector), 0))
	alice, bob := newID(f), newID(f)
	env, _ := seal(f, alice, bob.Address)
	f.Add(marshal(f, env)) // no stamp
	env.Stamp = "x"
	f.Add(marshal(f, env))
	f.Add([]byte("PCM\x01\x01"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Parse(b, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Parse: %v wraps neither ErrFormat nor ErrTooLarge", err)
			}
			return
		}
		out, err := env.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed envelope: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("Parse then MarshalBinary gives\n%x\nnot\n%x", out, b)
		}
		if env.Size() != len(b) {
			t.Fatalf("Size %d, parsed %d bytes", env.Size(), len(b))
		}
		again, err := Parse(out, 1<<20)
		if err != nil {
			t.Fatalf("Parse of a marshalled envelope: %v", err)
		}
		if again.ContentHash() != env.ContentHash() || again.Stamp != env.Stamp {
			t.Fatal("parsing again gives another envelope")
		}
	})
}
