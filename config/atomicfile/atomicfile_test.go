package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// dirNames returns the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Fatalf("read back %q, %v; want %q", b, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only f", names)
	}
}

// A write that fails half way leaves the old file as it was and no
// temporary file behind.
func TestWriteFileAtomicFailedWriteLeavesNoPart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	broken := func(w io.Writer) error {
		w.Write([]byte("half a k"))
		return errors.New("disk full")
	}
	for _, old := range []string{"", "old content"} {
		if old != "" {
			if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		err := writeAtomic(path, 0o600, broken, os.Rename)
		if err == nil {
			t.Fatal("failed write reported success")
		}
		b, rerr := os.ReadFile(path)
		switch {
		case old == "" && !errors.Is(rerr, fs.ErrNotExist):
			t.Errorf("after a failed create the file exists: %q, %v", b, rerr)
		case old != "" && string(b) != old:
			t.Errorf("after a failed replace the file holds %q, want %q", b, old)
		}
		if names := dirNames(t, dir); len(names) > 1 || (old == "" && len(names) != 0) {
			t.Errorf("directory holds %q after a failed write", names)
		}
	}
}

// A rename that fails (here: the target is a directory) removes the
// temporary file.
func TestWriteFileAtomicFailedRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.yml")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("a: b\n"), 0o600); err == nil {
		t.Fatal("write over a directory reported success")
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only settings.yml", names)
	}
}

func TestCreateFileAtomicRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	if err := CreateFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := CreateFile(path, []byte("two"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("file holds %q, want the first content", b)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only node.key", names)
	}
}
