// Package mailauth holds the credentials of the node's mail gateways (IMAP
// and SMTP): one local user, the node's mail address, whose password is
// made on first use and kept in the data directory (mode 0600), or given
// by the environment. It checks logins in constant time and slows down a
// source that keeps failing, without slowing the others.
package mailauth

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/config/atomicfile"
)

// EnvPassword is the environment variable that overrides the password file.
const EnvPassword = "PHPCHAT_MAIL_PASSWORD"

// Credentials are the mail gateways' user and password.
type Credentials struct {
	User     string // the node's mail address
	Password string
}

// Load returns the credentials of user: the password from the environment
// variable EnvPassword if set, else from the file at path, which is made
// with a new random password if it does not exist.
func Load(path, user string) (Credentials, error) {
	if p := os.Getenv(EnvPassword); p != "" {
		return Credentials{User: user, Password: p}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		p := newPassword()
		if err := atomicfile.CreateFile(path, []byte(p+"\n"), 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
			return Credentials{}, fmt.Errorf("mail password: %w", err)
		}
		b, err = os.ReadFile(path) // another process may have made it first
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("mail password: %w", err)
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return Credentials{}, fmt.Errorf("mail password: %s is empty: remove it to make a new password", path)
	}
	return Credentials{User: user, Password: p}, nil
}

// newPassword returns a random password of 128 bits.
func newPassword() string { return rand.Text() }

// A Checker checks logins against the credentials. A source (a client's
// IP address) that fails waits before its answer, longer after each
// failure in a row (up to MaxDelay); other sources are not slowed.
type Checker struct {
	Credentials Credentials
	Logger      *slog.Logger

	mu       sync.Mutex
	failures map[string]*failure
}

type failure struct {
	count int
	last  time.Time
}

// Delays of failed logins.
const (
	FirstDelay  = 250 * time.Millisecond
	MaxDelay    = 8 * time.Second
	forgetAfter = 15 * time.Minute // a source's failures are forgotten after this
	maxSources  = 4096
)

// Check reports whether user and password are the credentials' (the user
// compared without case). A failure is logged, without the password, and
// returns only after the source's delay.
func (c *Checker) Check(source, user, password string) bool {
	ok := strings.EqualFold(user, c.Credentials.User) &&
		subtle.ConstantTimeCompare([]byte(password), []byte(c.Credentials.Password)) == 1
	if ok {
		c.forget(source)
		return true
	}
	d := c.fail(source)
	if c.Logger != nil {
		c.Logger.Warn("mail: login failed", "source", source, "user", truncate(user, 100), "delay", d)
	}
	time.Sleep(d) // this client's answer only
	return false
}

// fail counts a failure of source and returns its delay.
func (c *Checker) fail(source string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.failures == nil {
		c.failures = make(map[string]*failure)
	}
	if len(c.failures) >= maxSources {
		for s, f := range c.failures {
			if now.Sub(f.last) > forgetAfter {
				delete(c.failures, s)
			}
		}
	}
	f := c.failures[source]
	if f == nil || now.Sub(f.last) > forgetAfter {
		f = &failure{}
		c.failures[source] = f
	}
	f.count++
	f.last = now
	d := FirstDelay << min(f.count-1, 6)
	return min(d, MaxDelay)
}

func (c *Checker) forget(source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.failures, source)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
