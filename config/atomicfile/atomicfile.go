// Package atomicfile writes files whole or not at all: a crash or a full
// disk leaves a file as it was, never half written.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to path so that path holds, at any moment and
// after a crash or a power cut, either its old content (or nothing) or all
// of data, never a part of it: data goes to a temporary file in the same
// directory, which is given mode perm, synced and renamed over path; then
// the directory is synced so that the rename is on disk too. On error path
// is as it was and the temporary file is gone.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, perm, writeData(data), os.Rename)
}

// CreateFile is WriteFile for a file that must not exist yet:
// if path exists, even when created concurrently, it fails with an error
// wrapping fs.ErrExist and leaves path as it was.
func CreateFile(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, perm, writeData(data), func(tmp, path string) error {
		// A hard link, unlike a rename, never replaces its target.
		err := os.Link(tmp, path)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// A file system without hard links: check, then rename.
			if _, serr := os.Lstat(path); serr == nil {
				return fs.ErrExist
			}
			return os.Rename(tmp, path)
		}
		if err != nil {
			return fs.ErrExist
		}
		os.Remove(tmp) // path is in place; a stray link is only untidy
		return nil
	})
}

func writeData(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// writeAtomic writes a temporary file next to path with write, gives it
// mode perm, syncs it and moves it into place with place(tmp, path).
func writeAtomic(path string, perm os.FileMode, write func(io.Writer) error, place func(tmp, path string) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = writeSync(f, write, perm)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The file is whole and in place; only whether the rename
		// survives a power cut is in doubt.
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// writeSync writes f with write, sets its mode to perm and syncs it.
func writeSync(f *os.File, write func(io.Writer) error, perm os.FileMode) error {
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir syncs the directory dir, so that a rename into it is on disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
