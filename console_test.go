package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyConsole is a `phpchat-node console` on a pseudo-terminal.
type ptyConsole struct {
	t    *testing.T
	name string
	pty  *os.File

	mu      sync.Mutex
	out     strings.Builder // everything the console printed
	seen    int             // how much of out expect has consumed
	changed chan struct{}   // a token when out grows

	exited  chan struct{} // closed when the console exited and out has all it printed
	waitErr error         // the console's exit, once exited is closed
}

// startConsole attaches a console to n and waits until it is attached.
func startConsole(t *testing.T, n *testNode, name string) *ptyConsole {
	t.Helper()
	cmd := n.command("console")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 60, Cols: 250})
	if err != nil {
		t.Fatalf("console on a pty: %v", err)
	}
	c := &ptyConsole{t: t, name: name, pty: f, changed: make(chan struct{}, 1), exited: make(chan struct{})}
	readDone := make(chan struct{})
	go func() { // ends when the console exits (the pty's other side closes)
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				c.mu.Lock()
				c.out.Write(buf[:n])
				c.mu.Unlock()
				select {
				case c.changed <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		c.waitErr = cmd.Wait()
		<-readDone
		close(c.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.exited
		f.Close()
		if t.Failed() {
			t.Logf("console %s printed:\n%s", name, c.output())
		}
	})
	c.expect("Attached to")
	return c
}

func (c *ptyConsole) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// expect waits until the console prints want after what earlier expects
// consumed, and consumes up to it.
func (c *ptyConsole) expect(want string) {
	c.t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		rest := c.out.String()[c.seen:]
		if i := strings.Index(rest, want); i >= 0 {
			c.seen += i + len(want)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		select {
		case <-c.changed:
		case <-deadline.C:
			c.t.Fatalf("console %s: %q not printed; after the last match it printed:\n%s", c.name, want, rest)
		}
	}
}

// expectPrompt waits until the console draws its next prompt, after what
// earlier expects consumed, and checks that it is want.
func (c *ptyConsole) expectPrompt(want string) {
	c.t.Helper()
	c.expect(":> ")
	c.mu.Lock()
	before := c.out.String()[:c.seen]
	c.mu.Unlock()
	if !strings.HasSuffix(before, want) {
		c.t.Fatalf("console %s: prompt %q, want %q", c.name, before[max(0, len(before)-len(want)-10):], want)
	}
}

// send types a line and Enter.
func (c *ptyConsole) send(line string) {
	c.t.Helper()
	if _, err := c.pty.Write([]byte(line + "\r")); err != nil {
		c.t.Fatalf("console %s: typing %q: %v", c.name, line, err)
	}
}

// expectEnd waits until the console prints last and exits, and checks
// that it left the screen to the shell clean: after last, no prompt, and
// the cursor at the start of a line. It returns the console's exit.
func (c *ptyConsole) expectEnd(last string) error {
	c.t.Helper()
	c.expect(last)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.t.Fatalf("console %s: still running after %q", c.name, last)
	}
	out := c.output()
	tail := out[strings.LastIndex(out, last)+len(last):]
	if strings.Contains(tail, ":> ") || !strings.HasSuffix(tail, "\n") {
		c.t.Fatalf("console %s: after %q it left %q on the screen, want the end of the line only", c.name, last, tail)
	}
	return c.waitErr
}

func TestConsolesTalk(t *testing.T) {
	// Both nodes let a request wait 4 s, so the timeout case is short.
	a := startNode(t, filepath.Join(t.TempDir(), "a"), "--listen", "127.0.0.1:0", "--nickname", "alice", "--talk-timeout", "4s")
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--nickname", "bob", "--talk-timeout", "4s")
	aInfo, bInfo := a.info(), b.info()
	bTarget := bInfo["address"].(string) + "@" + listenAddr(t, b)
	ca := startConsole(t, a, "alice")
	cb := startConsole(t, b, "bob")

	// Unknown commands and bad arguments print a usage line; commands
	// are not matched by prefix.
	ca.send("/helpme")
	ca.expect(`Command "/helpme" not found. Usage: /help`)
	ca.send("/request accept one")
	ca.expect("Usage: /request accept N")
	ca.send("no talk yet")
	ca.expect("Not talking to anyone. Usage:")
	ca.send("/help me")
	ca.expect("Usage: /help")
	ca.send("/nick two words")
	ca.expect("Usage: /nick [NAME]")

	// A request, accepted: both sides compare fingerprints the first time.
	ca.send("/connect " + bTarget)
	ca.expect("Peers: " + bInfo["fingerprint"].(string))
	ca.expect("Waiting for response ...")
	cb.expect("You never talked to " + aInfo["address"].(string) + " before.")
	cb.expect("Yours: " + bInfo["fingerprint"].(string))
	cb.expect("Peers: " + aInfo["fingerprint"].(string))
	cb.expect(`User "alice" wants to talk to you.`)
	cb.expect(`Type "/request accept 1" to get in touch.`)
	b.waitInfo("b shows the pending request", func(in map[string]any) bool { return connStatus(in) == "t" })
	cb.send("/request accept 1")
	cb.expect(`Now talking to "alice"`)
	cb.expectPrompt("alice:> ")
	ca.expect("Talk request accepted.")
	ca.expect(`Now talking to "bob"`)
	ca.expectPrompt("bob:> ")

	ca.send("hello bob, ça va?")
	cb.expect("<alice> hello bob, ça va?")
	cb.send("hi alice")
	ca.expect("<bob> hi alice")

	// info -c while the talk runs: three JSON samples, traffic rising,
	// the connection marked talking.
	info := a.command("info", "-c", "--json", "--count", "3", "--interval", "400ms")
	stdout, err := info.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := info.Start(); err != nil {
		t.Fatal(err)
	}
	infoDone := make(chan struct{})
	typed := make(chan int, 1)
	go func() { // keeps the talk busy both ways while info -c samples it
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-infoDone:
				typed <- n
				return
			case <-tick.C:
				n++
				ca.pty.Write([]byte(fmt.Sprintf("line %d\r", n)))
				cb.pty.Write([]byte(fmt.Sprintf("reply %d\r", n)))
			}
		}
	}()
	var samples []map[string]any
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var s map[string]any
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Errorf("info -c printed %q: %v", sc.Text(), err)
		}
		samples = append(samples, s)
	}
	close(infoDone)
	lines := <-typed
	if err := info.Wait(); err != nil {
		t.Fatalf("info -c: %v", err)
	}
	if len(samples) != 3 {
		t.Fatalf("info -c --count 3 printed %d samples", len(samples))
	}
	for i, s := range samples {
		if connStatus(s) != "T" {
			t.Errorf("sample %d: connection status %q, want T", i, connStatus(s))
		}
		if s["talking"] != 1.0 {
			t.Errorf("sample %d: talking %v, want 1", i, s["talking"])
		}
		if i > 0 {
			for _, k := range []string{"traffic_in", "traffic_out"} {
				if !(s[k].(float64) > samples[i-1][k].(float64)) {
					t.Errorf("sample %d: %s %v, not above %v", i, k, s[k], samples[i-1][k])
				}
			}
		}
	}
	cb.expect(fmt.Sprintf("<alice> line %d", lines))
	ca.expect(fmt.Sprintf("<bob> reply %d", lines))

	// Both address books have the other now.
	cb.send("/ab")
	cb.expect(aInfo["address"].(string) + "  alice")
	ca.send("/nick alice2")
	ca.expect("New nickname: alice2")
	cb.expect(`User "alice" is now known as "alice2".`)

	ca.send("/close")
	cb.expect(`Talk closed by "alice2".`)
	ca.expect(`Talk with "bob" closed.`)

	// A decline reaches the caller; the peer is known by now.
	ca.send("/talk bob")
	ca.expect("You talked to " + bInfo["address"].(string) + " (bob) before.")
	cb.expect(`Type "/request accept 2" to get in touch.`)
	cb.send("/request")
	cb.expect(" 2 ")
	cb.expect("alice2")
	cb.expect("END OF LIST")
	cb.send("/request decline 2")
	cb.expect("Declined talk request ID 2.")
	ca.expect("Talk request declined.")

	// An unanswered request times out on both sides.
	ca.send("/talk bob")
	cb.expect(`Type "/request accept 3" to get in touch.`)
	cb.expect("Talk request ID 3 timed-out.")
	ca.expect("Talk request timed out.")
	cb.send("/request accept 3")
	cb.expect("Talk request ID 3: ")

	// A node without a console has no user interface.
	c := startNode(t, filepath.Join(t.TempDir(), "c"), "--listen", "127.0.0.1:0", "--nickname", "carol")
	cTarget := c.info()["address"].(string) + "@" + listenAddr(t, c)
	ca.send("/connect " + cTarget)
	ca.expect("has no user interface. Can't talk to you.")

	ca.send("/history")
	ca.expect("/helpme")
	ca.expect("END OF LIST")
	ca.send("/exit")
	if err := ca.expectEnd("exit"); err != nil {
		t.Errorf("console after /exit: %v", err)
	}
	cb.pty.Write([]byte{4}) // Ctrl-D
	if err := cb.expectEnd("exit"); err != nil {
		t.Errorf("console after Ctrl-D: %v", err)
	}
}

func TestConsoleEndsWhenNodeGoes(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "n"), "--listen", "127.0.0.1:0")
	c := startConsole(t, n, "n")
	c.pty.Write([]byte("half typed"))
	c.expect("half typed")
	n.cmd.Process.Kill()
	if err := c.expectEnd("The node closed the connection."); err == nil {
		t.Error("console exited with status 0 when the node went away")
	}
}

// connStatus returns the status letters of the connections in an info.
func connStatus(in map[string]any) string {
	conns, _ := in["connections"].([]any)
	var b strings.Builder
	for _, c := range conns {
		s, _ := c.(map[string]any)["status"].(string)
		b.WriteString(s)
	}
	return b.String()
}

func TestConsoleNeedsATerminal(t *testing.T) {
	n := &testNode{t: t, dataDir: t.TempDir()}
	out, err := n.command("console").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a terminal") {
		t.Fatalf("console without a terminal: %v, %s", err, out)
	}
}

// TestConsoleMail: /msg new composes while events keep coming, "You got
// mail." announces what arrives, /msg lists and /msg read shows it.
func TestConsoleMail(t *testing.T) {
	a := startNode(t, filepath.Join(t.TempDir(), "a"), "--listen", "127.0.0.1:0", "--nickname", "alice")
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--nickname", "bob", "--connect", listenAddr(t, a))
	a.waitInfo("a has a session with b", func(in map[string]any) bool { return peers(in) == 1 })
	aAddr, bAddr := a.info()["address"].(string), b.info()["address"].(string)
	ca := startConsole(t, a, "alice")
	cb := startConsole(t, b, "bob")

	cb.send("/msg new " + aAddr)
	cb.expect("Subject: ")
	// Mail arriving while bob writes is shown at once.
	if out, errOut, code := a.cliStdin("hi bob\n", "send", "--to", bAddr, "--subject", "while you write"); code != 0 {
		t.Fatalf("send: exit status %d, %s%s", code, out, errOut)
	}
	cb.expect(`You got mail. From ` + aAddr + `, subject "while you write"`)
	cb.send("Re: hello")
	cb.expect("End it with a line holding only a dot")
	cb.send("line one")
	cb.send(".")
	cb.expect("Send the message? [y/n] ")
	cb.send("maybe")
	cb.expect("Answer y to send the message, n to drop it.")
	cb.send("y")
	cb.expect("OK: message ")
	cb.expectPrompt("phpchat:> ")
	// Ctrl-D while composing drops the message, not the console.
	cb.send("/msg n " + aAddr)
	cb.expect("Subject: ")
	cb.pty.Write([]byte{4})
	cb.expect("Nothing created, nothing sent.")
	cb.expectPrompt("phpchat:> ")
	cb.send("/msg")
	cb.expect("END OF LIST")

	ca.expect(`You got mail. From ` + bAddr + `, subject "Re: hello"`)
	ca.send("/msg") // alice's message to bob first, then bob's
	ca.expect("  1   outbox ")
	ca.expect("  2 * inbox ")
	ca.expect("END OF LIST")
	ca.send("/msg read 2")
	ca.expect("Subject:  Re: hello")
	ca.expect("Sender:   " + bAddr + " (verified)")
	ca.expect("line one")
	ca.expect("----- MESSAGE END -----")
	ca.send("/msg")
	ca.expect("  2   inbox ")
	ca.send("/msg again")
	ca.expect("Usage: /msg")
	ca.send("/help")
	ca.expect("/msg new ADDRESS|NICK")
}
