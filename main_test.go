package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// The tests of this file run the command line in process, through runMain,
// and nodes as goroutines of the test. Those that need real processes
// (signals, the pty console) are in e2e_test.go and console_test.go.

// runCLI runs the command line args in process and returns what it
// printed and its exit status. A command that does not end within a minute
// is cancelled, so that a `run` wrongly accepted fails the test rather than
// hanging it.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = runMain(ctx, append([]string{"phpchat-node"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// testNode is a node run by a test: a phpchat-node process (startNode) or
// `run` in the test's process (startInProcess).
type testNode struct {
	t       *testing.T
	dataDir string
	cmd     *exec.Cmd // the node's process; nil in process
	stderr  syncBuffer
	notify  *net.UnixConn
	stop    func()        // asks the node to stop
	done    chan struct{} // closed when the node has exited
	exitErr error         // why it exited, once done is closed
}

// syncBuffer is a bytes.Buffer that the test may read while the node
// writes its log into it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs the command line args in process on the node's data dir.
func (n *testNode) cli(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	return runCLI(n.t, append([]string{"--data-dir", n.dataDir}, args...)...)
}

// notifySocket listens on a socket for systemd's notifications, as
// NOTIFY_SOCKET names it to the node.
func notifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, sock
}

// startInProcess runs `run` with args on dataDir in a goroutine and waits
// until the node tells systemd READY=1. The node stops at the end of the
// test. It sets NOTIFY_SOCKET, so the test may not be parallel.
func startInProcess(t *testing.T, dataDir string, args ...string) *testNode {
	t.Helper()
	notify, sock := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{t: t, dataDir: dataDir, notify: notify, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		args := append([]string{"phpchat-node", "--data-dir", dataDir, "run"}, args...)
		if code := runMain(ctx, args, &n.stderr, &n.stderr); code != 0 {
			n.exitErr = fmt.Errorf("exit status %d", code)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(time.Minute):
			t.Error("node run in process did not stop within a minute")
		}
		if t.Failed() {
			t.Logf("node log:\n%s", n.stderr.String())
		}
	})
	n.waitReady()
	return n
}

// waitReady waits for the node to tell systemd READY=1, failing the test if
// the node exits first.
func (n *testNode) waitReady() {
	n.t.Helper()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		n.notify.SetReadDeadline(time.Now().Add(time.Minute))
		k, err := n.notify.Read(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:k])
	}()
	select {
	case s := <-got:
		if s != "READY=1" {
			n.t.Fatalf("waiting for READY=1 from the node: got %q", s)
		}
	case <-n.done:
		n.t.Fatalf("node exited before it was ready: %v", n.exitErr)
	}
}

// wait waits for the node to exit and returns why it did.
func (n *testNode) wait() error {
	n.t.Helper()
	select {
	case <-n.done:
		return n.exitErr
	case <-time.After(time.Minute):
		n.t.Fatal("node did not exit within a minute")
		return nil
	}
}

// info runs `info --json` and decodes it.
func (n *testNode) info() map[string]any {
	n.t.Helper()
	out, errOut, code := n.cli("info", "--json")
	if code != 0 {
		n.t.Fatalf("info --json: exit status %d: %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		n.t.Fatalf("info --json printed %q: %v", out, err)
	}
	return m
}

// waitInfo polls `info --json` until ok accepts it: the node's answers are
// the only signal there is of what it sees of the network.
func (n *testNode) waitInfo(what string, ok func(map[string]any) bool) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		in := n.info()
		if ok(in) {
			return in
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not reached; last info %v", what, in)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func peers(in map[string]any) int {
	p, _ := in["peers"].(float64)
	return int(p)
}

// listenAddr returns the host:port a node listens on for peers.
func listenAddr(t *testing.T, n *testNode) string {
	t.Helper()
	addr, _ := n.info()["listen"].(string)
	if strings.HasSuffix(addr, ":0") || addr == "" {
		t.Fatalf("info of a running node shows listen %q, want the bound address", addr)
	}
	return addr
}

func TestRunRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      string
		file     string
		wantText string
	}{
		{name: "port out of range", args: []string{"--listen", "0.0.0.0:70000"}, wantText: "setting listen (flag --listen): port"},
		{name: "unknown log level", env: "loud", wantText: "setting log-level (environment PHPCHAT_LOG_LEVEL): unknown log level"},
		{name: "unknown key", file: "listen: 127.0.0.1:0\nlisten-port: 1\n", wantText: `line 2: unknown key "listen-port"`},
		{name: "unreadable yaml", file: "listen: [\n", wantText: "settings.yml"},
		{name: "bad file value", file: "shutdown-timeout: never\n", wantText: "setting shutdown-timeout"},
		{name: "unknown flag", args: []string{"--listen-port", "1"}, wantText: "flag provided but not defined: -listen-port"},
		{name: "bad connect target", args: []string{"--connect", "pc1nothing@"}, wantText: "setting connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "node")
			if tc.file != "" {
				if err := os.MkdirAll(dataDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dataDir, "settings.yml"), []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.env != "" {
				t.Setenv("PHPCHAT_LOG_LEVEL", tc.env)
			}
			_, errOut, code := runCLI(t, append([]string{"--data-dir", dataDir, "run", "--listen", "127.0.0.1:0"}, tc.args...)...)
			if code != exitSettings {
				t.Fatalf("run: exit status %d, output %s; want %d", code, errOut, exitSettings)
			}
			if !strings.Contains(errOut, tc.wantText) {
				t.Fatalf("run said %q, want it to contain %q", errOut, tc.wantText)
			}
		})
	}
}

func TestInfoWithoutNode(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "none")
	for _, args := range [][]string{{"info"}, {"info", "--json"}} {
		if _, errOut, code := runCLI(t, append([]string{"--data-dir", dataDir}, args...)...); code != exitFailure || !strings.Contains(errOut, "no node in "+dataDir) {
			t.Errorf("%s on an empty dir: exit status %d, %s", strings.Join(args, " "), code, errOut)
		}
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("info created the data dir %s", dataDir)
	}
}

func TestContactsAndCronjob(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "node")
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := id.Address.String()

	n := startInProcess(t, dataDir, "--listen", "127.0.0.1:0")
	run := func(args ...string) (string, int) {
		t.Helper()
		out, errOut, code := n.cli(args...)
		return out + errOut, code
	}
	typo := []byte(peerAddr)
	typo[10] ^= 1 // one character changed
	if out, code := run("contacts", "add", string(typo), "bob"); code == 0 || !strings.Contains(out, "invalid address") {
		t.Fatalf("mistyped address: exit status %d, %s", code, out)
	}
	if out, code := run("contacts", "add", peerAddr, "Bob"); code != 0 {
		t.Fatalf("contacts add: exit status %d, %s", code, out)
	}
	if out, code := run("contacts", "add", peerAddr, "bobby"); code == 0 || !strings.Contains(out, "already") {
		t.Fatalf("same address twice: exit status %d, %s", code, out)
	}
	out, code := run("contacts", "list", "--json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["nickname"] != "Bob" || list[0]["address"] != peerAddr {
		t.Fatalf("contacts list --json: exit status %d, %s", code, out)
	}
	out, code = run("cronjob", "-c")
	if code != 0 || !strings.Contains(out, "save") || !strings.Contains(out, "ok") {
		t.Fatalf("cronjob -c: exit status %d, %s", code, out)
	}
	if out, code := run("cronjob"); code != exitSettings || !strings.Contains(out, "say what to run") {
		t.Fatalf("cronjob without a job: exit status %d, %s", code, out)
	}

	n.stop()
	if err := n.wait(); err != nil {
		t.Fatalf("node exit: %v", err)
	}
	// With the node stopped, the book is read from the store.
	out, code = run("contacts")
	if code != 0 || !strings.Contains(out, "Bob") || !strings.Contains(out, peerAddr) {
		t.Fatalf("contacts on the stopped node: exit status %d, %s", code, out)
	}
	if out, code := run("contacts", "remove", "1"); code != 0 {
		t.Fatalf("contacts remove: exit status %d, %s", code, out)
	}
	if out, _ := run("contacts"); !strings.Contains(out, "empty") {
		t.Fatalf("after remove: %s", out)
	}
	if out, code := run("cronjob", "-c"); code != exitFailure || !strings.Contains(out, "no node is running") {
		t.Fatalf("cronjob without a node: exit status %d, %s", code, out)
	}
}

func TestHashcashCommand(t *testing.T) {
	out, errOut, code := runCLI(t, "hashcash", "mint", "-b", "12", "alice")
	if code != 0 {
		t.Fatalf("mint: exit status %d, %s", code, errOut)
	}
	stamp := strings.TrimSpace(out)
	if !strings.HasPrefix(stamp, "1:12:") {
		t.Fatalf("mint printed %q", stamp)
	}
	if _, errOut, code := runCLI(t, "hashcash", "check", "-b", "12", "-r", "alice", stamp); code != 0 {
		t.Fatalf("check of a good stamp: exit status %d, %s", code, errOut)
	}
	// As the C tool, which lowercases resources: any case matches.
	if _, errOut, code := runCLI(t, "hashcash", "check", "-b", "12", "-r", "Alice", stamp); code != 0 {
		t.Fatalf("check with the resource in another case: exit status %d, %s", code, errOut)
	}
	// A usage error is status 2: status 1 means a refused stamp.
	for _, args := range [][]string{{"-b", "12", stamp}, {"-b", "12", "-r", "alice"}, {"--bits", "x", "-r", "alice", stamp}} {
		if _, errOut, code := runCLI(t, append([]string{"hashcash", "check"}, args...)...); code != exitSettings {
			t.Errorf("check %v: exit status %d, %s; want %d", args, code, errOut, exitSettings)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-b", "12", "-r", "bob", stamp}, "wrong resource"},
		{[]string{"-b", "30", "-r", "alice", stamp}, "insufficient bits"},
		{[]string{"-b", "12", "-r", "alice", "1:12:261122:alice::x"}, "malformed"},
	} {
		_, errOut, code := runCLI(t, append([]string{"hashcash", "check"}, tc.args...)...)
		if code != exitFailure || !strings.Contains(errOut, tc.want) {
			t.Errorf("check %v: exit status %d, %s; want %d and %q", tc.args, code, errOut, exitFailure, tc.want)
		}
	}
	out, errOut, code = runCLI(t, "hashcash", "speed", "-d", "20ms")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("speed: exit status %d, %q, %s", code, out, errOut)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 0 || f[0] == "0" {
			t.Fatalf("speed line %q does not start with a rate", l)
		} else if _, err := strconv.Atoi(f[0]); err != nil {
			t.Fatalf("speed line %q does not start with an integer", l)
		}
	}
}

func TestVersion(t *testing.T) {
	out, errOut, code := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "phpchat-node ") {
		t.Fatalf("version: exit status %d, %q, %s", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, "no-such-command"); code == 0 {
		t.Fatalf("an unknown command: exit status 0, %s", errOut)
	}
}

func TestNodesConnect(t *testing.T) {
	a := startInProcess(t, filepath.Join(t.TempDir(), "a"), "--listen", "127.0.0.1:0")
	aAddr := a.info()["address"].(string)
	aListen := listenAddr(t, a)
	b := startInProcess(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--connect", aAddr+"@"+aListen)
	bListen := listenAddr(t, b)
	c := startInProcess(t, filepath.Join(t.TempDir(), "c"), "--listen", "127.0.0.1:0", "--connect", aListen, "--connect", bListen)

	in := a.waitInfo("a sees b and c", func(in map[string]any) bool { return peers(in) == 2 })
	if in["peers_in"].(float64) != 2 || in["traffic_in"].(float64) == 0 || in["traffic_out"].(float64) == 0 {
		t.Fatalf("a's info: %v", in)
	}
	c.waitInfo("c sees a and b", func(in map[string]any) bool { return peers(in) == 2 && in["peers_out"].(float64) == 2 })
	b.waitInfo("b sees a and c", func(in map[string]any) bool { return peers(in) == 2 })

	// A node that expects another address at a's port is refused.
	wrong := startInProcess(t, filepath.Join(t.TempDir(), "w"), "--listen", "127.0.0.1:0", "--connect", b.info()["address"].(string)+"@"+aListen)
	in = wrong.waitInfo("the wrong address refused", func(in map[string]any) bool {
		targets, _ := in["connect"].([]any)
		if len(targets) != 1 {
			return false
		}
		errText, _ := targets[0].(map[string]any)["last_error"].(string)
		return strings.Contains(errText, "another node answers there")
	})
	if peers(in) != 0 {
		t.Fatalf("node dialling a with b's address has peers: %v", in)
	}
}
