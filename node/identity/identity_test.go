package identity

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddressRoundTrip(t *testing.T) {
	for i := 0; i < 50; i++ {
		id, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		s := id.Address.String()
		if len(s) != AddressLen || len(s) > 64 {
			t.Fatalf("address %q has %d characters", s, len(s))
		}
		if !strings.HasPrefix(s, Prefix+"1") {
			t.Fatalf("address %q lacks prefix", s)
		}
		for _, in := range []string{s, strings.ToUpper(s)} {
			got, err := ParseAddress(in)
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", in, err)
			}
			if got != id.Address {
				t.Fatalf("ParseAddress(%q) = %v, want %v", in, got, id.Address)
			}
		}
	}
}

// Every single-character change of an address in a sample must be refused.
func TestAddressChecksumCatchesEveryTypo(t *testing.T) {
	const alphabet = charset + "1bio" // the charset plus characters outside it
	for n := 0; n < 20; n++ {
		id, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		s := id.Address.String()
		for i := 0; i < len(s); i++ {
			for _, c := range alphabet {
				if byte(c) == s[i] {
					continue
				}
				typo := s[:i] + string(c) + s[i+1:]
				if _, err := ParseAddress(typo); err == nil {
					t.Fatalf("typo %q of %q (position %d) was accepted", typo, s, i)
				}
			}
		}
	}
}

func TestParseAddressRefuses(t *testing.T) {
	id, _ := Generate()
	s := id.Address.String()
	for name, in := range map[string]string{
		"empty":      "",
		"short":      s[:len(s)-1],
		"long":       s + "q",
		"mixed case": strings.ToUpper(s[:10]) + s[10:],
		"prefix":     "pd" + s[2:],
		"swap":       s[:5] + s[6:7] + s[5:6] + s[7:],
	} {
		if s[5] == s[6] && name == "swap" {
			continue
		}
		if _, err := ParseAddress(in); err == nil {
			t.Errorf("%s: ParseAddress(%q) accepted", name, in)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	id, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	if again.Address != id.Address || !again.Key.Equal(id.Key) {
		t.Fatal("reloaded identity differs")
	}
	msg := []byte("hello")
	if !ed25519.Verify(again.Address.PublicKey(), msg, ed25519.Sign(id.Key, msg)) {
		t.Fatal("address does not verify the key's signature")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(path); err == nil {
		t.Fatal("corrupt key file accepted")
	}
}
