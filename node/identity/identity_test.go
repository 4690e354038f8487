package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
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

// A 0-byte key file, as an interrupted creation left before keys were
// written atomically, holds no identity: LoadOrCreate makes a new one.
func TestLoadOrCreateReplacesEmptyKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of an empty key: %v, want fs.ErrNotExist naming the file", err)
	}
	id, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate over an empty key: created=%v err=%v", created, err)
	}
	again, err := Load(path)
	if err != nil || again.Address != id.Address {
		t.Fatalf("reload: %v, %v", again, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("data dir holds %d files, want only node.key", len(ents))
	}
}

// A damaged key file is never replaced: the error names the file and says
// what to do, and the file stays as it was.
func TestLoadOrCreateKeepsDamagedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, damaged := range [][]byte{whole[:len(whole)/2], []byte("garbage")} {
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadOrCreate(path)
		if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("damaged key: %v, want an error naming %s", err, path)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, damaged) {
			t.Fatal("damaged key file was changed")
		}
	}
}

func TestSaveRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	a, _ := Generate()
	b, _ := Generate()
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Save: %v, want fs.ErrExist", err)
	}
	got, err := Load(path)
	if err != nil || got.Address != a.Address {
		t.Fatalf("key after refused Save: %v, %v; want the first", got, err)
	}
}
