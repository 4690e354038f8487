package imapgw

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/store"
)

// TestBenchMbsyncFull measures a full sync of a large INBOX with mbsync:
//
//	PHPCHAT_IMAP_BENCH=10000 go test -run TestBenchMbsyncFull -v ./subsystems/imapgw/
//
// PHPCHAT_IMAP_BENCH_MBSYNC="FSync no" adds a line to mbsync's
// configuration, here to leave out mbsync's own fsync per message.
func TestBenchMbsyncFull(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PHPCHAT_IMAP_BENCH"))
	if n == 0 {
		t.Skip("set PHPCHAT_IMAP_BENCH to the number of messages")
	}
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Skip("mbsync not installed (Debian package isync)")
	}
	g := newGW(t)
	g.stop()
	body := make([]byte, 2000)
	for i := range body {
		body[i] = 'a' + byte(i%26)
		if i%76 == 75 {
			body[i] = '\n'
		}
	}
	t0 := time.Now()
	for i := range n {
		var id [16]byte
		rand.Read(id[:])
		c := fmt.Sprintf("From: a@b\r\nSubject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\n%s\r\n", i, i, body)
		if _, err := g.db.Inbox().Add(store.InMsg{ID: id, From: "x", Content: []byte(c)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("filled %d messages in %v", n, time.Since(t0))
	t0 = time.Now()
	g.start() // assigns the UIDs
	t.Logf("gateway start (UIDs for %d messages) in %v", n, time.Since(t0))
	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail") + "/"
	os.MkdirAll(maildir, 0o700)
	conf := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(conf, []byte(os.Getenv("PHPCHAT_IMAP_BENCH_MBSYNC")+"\nIMAPAccount gw\nHost 127.0.0.1\nPort "+g.port()+"\nUser "+testUser+"\nPass \""+testPass+
		"\"\nSSLType None\nAuthMechs LOGIN\n\nIMAPStore r\nAccount gw\n\nMaildirStore l\nPath "+maildir+"\nInbox "+maildir+
		"INBOX\n\nChannel c\nFar :r:\nNear :l:\nPatterns INBOX\nCreate Near\nSyncState *\nSync Pull\n"), 0o600)
	for _, run := range []string{"full", "again"} {
		t0 = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		out, err := exec.CommandContext(ctx, "mbsync", "-c", conf, "-a").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		t.Logf("mbsync %s sync of %d messages: %v", run, n, time.Since(t0))
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t.Logf("peak RSS of the test process (store, gateway, filling): %d MiB", ru.Maxrss/1024)
}
