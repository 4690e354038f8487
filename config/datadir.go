package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Layout names the files of a data directory.
type Layout struct{ Dir string }

// Settings returns the path of settings.yml.
func (l Layout) Settings() string { return filepath.Join(l.Dir, "settings.yml") }

// Key returns the path of the node's private key.
func (l Layout) Key() string { return filepath.Join(l.Dir, "node.key") }

// Store returns the directory of the database.
func (l Layout) Store() string { return filepath.Join(l.Dir, "store") }

// ControlSocket returns the path of the control socket.
func (l Layout) ControlSocket() string { return filepath.Join(l.Dir, "control.sock") }

// MailPassword is the file of the mail gateways' password.
func (l Layout) MailPassword() string { return filepath.Join(l.Dir, "mail.password") }

// LockFile returns the path of the file that a running node holds locked.
func (l Layout) LockFile() string { return filepath.Join(l.Dir, "lock") }

// DefaultDataDir returns the XDG data directory of phpchat-node:
// $XDG_DATA_HOME/phpchat-node, or ~/.local/share/phpchat-node.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "phpchat-node")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "phpchat-node"
	}
	return filepath.Join(home, ".local", "share", "phpchat-node")
}

// Create makes the data directory (mode 0700) and, when missing, a
// settings.yml with every default. created reports whether settings.yml
// was written.
func (l Layout) Create() (created bool, err error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return false, fmt.Errorf("create data dir: %w", err)
	}
	if err := os.Chmod(l.Dir, 0o700); err != nil {
		return false, fmt.Errorf("create data dir: %w", err)
	}
	err = WriteDefaultFile(l.Settings())
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// A Lock is held on a data directory by the one node that runs on it.
type Lock struct{ f *os.File }

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("data dir is in use")

// Lock takes the data directory's lock, or fails with an error wrapping
// ErrLocked that names the pid of the process holding it. The lock is an
// flock(2) on the lock file, so it is released when the process exits,
// however it exits.
func (l Layout) Lock() (*Lock, error) {
	f, err := os.OpenFile(l.LockFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			pid := strings.TrimSpace(string(b[:n]))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is held by pid %s", ErrLocked, l.Dir, pid)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", l.Dir, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (k *Lock) Unlock() error {
	// Empty the pid first, so a reader never sees our pid on a free lock.
	k.f.Truncate(0)
	return k.f.Close()
}
