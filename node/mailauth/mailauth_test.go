package mailauth

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadMakesPasswordOnce(t *testing.T) {
	t.Setenv(EnvPassword, "")
	path := filepath.Join(t.TempDir(), "mail.password")
	c1, err := Load(path, "pc1x@phpchat.lan")
	if err != nil {
		t.Fatal(err)
	}
	if len(c1.Password) < 20 {
		t.Fatalf("password %q too short", c1.Password)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, %v; want mode 0600", fi, err)
	}
	c2, err := Load(path, "pc1x@phpchat.lan")
	if err != nil || c2.Password != c1.Password {
		t.Fatalf("second load: %q, %v; want the same password", c2.Password, err)
	}
	t.Setenv(EnvPassword, "from-env")
	if c3, _ := Load(path, "u"); c3.Password != "from-env" {
		t.Fatalf("the environment does not override: %q", c3.Password)
	}
}

// A failed login waits; a good one does not, and others are not slowed.
func TestCheckSlowsFailures(t *testing.T) {
	c := &Checker{Credentials: Credentials{User: "Me@phpchat.lan", Password: "secret"}}
	if !c.Check("10.0.0.1", "me@PHPCHAT.lan", "secret") {
		t.Fatal("good login refused")
	}
	start := time.Now()
	if c.Check("10.0.0.2", "me@phpchat.lan", "guess") {
		t.Fatal("bad password accepted")
	}
	if d := time.Since(start); d < FirstDelay {
		t.Fatalf("a failed login answered after %v, want at least %v", d, FirstDelay)
	}
	if d := c.fail("10.0.0.2"); d != 2*FirstDelay {
		t.Fatalf("second failure's delay %v, want %v", d, 2*FirstDelay)
	}
	if d := c.fail("10.0.0.3"); d != FirstDelay {
		t.Fatalf("another source's first delay %v, want %v", d, FirstDelay)
	}
	if c.Check("10.0.0.1", "other@phpchat.lan", "secret") {
		t.Fatal("another user accepted")
	}
}
