package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the phpchat-node built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phpchat-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "phpchat-node")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testNode is a phpchat-node process run by a test.
type testNode struct {
	t       *testing.T
	dataDir string
	cmd     *exec.Cmd
	stderr  syncBuffer
	notify  *net.UnixConn
	exited  chan error
}

// syncBuffer is a bytes.Buffer that the test may read while os/exec's
// copying goroutine writes the node's log into it.
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

// command returns an exec.Cmd of the binary on the node's data dir.
func (n *testNode) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"--data-dir", n.dataDir}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	return cmd
}

// startNode runs `run` and waits for it to tell systemd's socket READY=1.
func startNode(t *testing.T, dataDir string, args ...string) *testNode {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, dataDir: dataDir, notify: notify, exited: make(chan error, 1)}
	n.cmd = n.command(append([]string{"run"}, args...)...)
	n.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	n.cmd.Stderr = &n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		notify.Close()
		if t.Failed() {
			t.Logf("node log:\n%s", n.stderr.String())
		}
	})
	n.expectNotify("READY=1")
	return n
}

func (n *testNode) expectNotify(want string) {
	n.t.Helper()
	buf := make([]byte, 256)
	n.notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := n.notify.Read(buf)
	if err != nil {
		n.t.Fatalf("waiting for %s from the node: %v", want, err)
	}
	if string(buf[:got]) != want {
		n.t.Fatalf("node notified %q, want %q", buf[:got], want)
	}
}

// info runs `info --json` and decodes it.
func (n *testNode) info() map[string]any {
	n.t.Helper()
	out, err := n.command("info", "--json").Output()
	if err != nil {
		n.t.Fatalf("info --json: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		n.t.Fatalf("info --json printed %q: %v", out, err)
	}
	return m
}

func TestRunInfoEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "node")
	n := startNode(t, dataDir, "--listen", "127.0.0.1:0", "--nickname", "alice")

	fi, err := os.Stat(dataDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "node.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.key: %v, want mode 0600", err)
	}

	in := n.info()
	for _, k := range []string{"version", "address", "mail_address", "nickname", "listen", "data_dir", "running"} {
		if _, ok := in[k]; !ok {
			t.Errorf("info --json lacks %q: %v", k, in)
		}
	}
	addr, _ := in["address"].(string)
	if in["running"] != true || in["nickname"] != "alice" || in["mail_address"] != addr+"@phpchat.lan" || len(addr) > 64 || addr == "" {
		t.Fatalf("info of the running node: %v", in)
	}

	// info -c --json prints one JSON object per interval.
	out, err := n.command("info", "-c", "--json", "--count", "3", "--interval", "50ms").Output()
	if err != nil {
		t.Fatalf("info -c: %v", err)
	}
	samples := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(samples) != 3 {
		t.Fatalf("info -c --count 3 printed %d lines: %s", len(samples), out)
	}
	for _, line := range samples {
		var s map[string]any
		if err := json.Unmarshal([]byte(line), &s); err != nil || s["running"] != true || s["address"] != addr {
			t.Fatalf("info -c sample %q: %v", line, err)
		}
	}

	// A second node on the same data dir is refused, naming the first's pid.
	out, err = n.command("run", "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "pid "+strconv.Itoa(n.cmd.Process.Pid)) {
		t.Fatalf("second run: %v, %s; want a refusal naming pid %d", err, out, n.cmd.Process.Pid)
	}

	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.expectNotify("STOPPING=1")
	select {
	case err := <-n.exited:
		if err != nil {
			t.Fatalf("node exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node did not stop within 5 s of SIGTERM")
	}

	in = n.info()
	if in["running"] != false || in["address"] != addr {
		t.Fatalf("info of the stopped node: %v", in)
	}
	out, err = n.command("info", "-c").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no node is running") {
		t.Fatalf("info -c without a running node: %v, %s", err, out)
	}

	// The identity survives a restart.
	n = startNode(t, dataDir, "--listen", "127.0.0.1:0")
	if got := n.info()["address"]; got != addr {
		t.Fatalf("address after restart %v, want %v", got, addr)
	}
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
		{name: "unknown log level", env: "PHPCHAT_LOG_LEVEL=loud", wantText: "setting log-level (environment PHPCHAT_LOG_LEVEL): unknown log level"},
		{name: "unknown key", file: "listen: 127.0.0.1:0\nlisten-port: 1\n", wantText: `line 2: unknown key "listen-port"`},
		{name: "unreadable yaml", file: "listen: [\n", wantText: "settings.yml"},
		{name: "bad file value", file: "shutdown-timeout: never\n", wantText: "setting shutdown-timeout"},
		{name: "unknown flag", args: []string{"--listen-port", "1"}, wantText: "flag provided but not defined: -listen-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &testNode{t: t, dataDir: filepath.Join(t.TempDir(), "node")}
			if tc.file != "" {
				os.MkdirAll(n.dataDir, 0o700)
				os.WriteFile(filepath.Join(n.dataDir, "settings.yml"), []byte(tc.file), 0o600)
			}
			cmd := n.command(append([]string{"run"}, tc.args...)...)
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			done := make(chan struct{})
			time.AfterFunc(30*time.Second, func() {
				select {
				case <-done:
				default:
					cmd.Process.Kill()
				}
			})
			out, err := cmd.CombinedOutput()
			close(done)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("run: %v, output %s; want exit status 2", err, out)
			}
			if !strings.Contains(string(out), tc.wantText) {
				t.Fatalf("run said %q, want it to contain %q", out, tc.wantText)
			}
		})
	}
}

func TestInfoWithoutNode(t *testing.T) {
	n := &testNode{t: t, dataDir: filepath.Join(t.TempDir(), "none")}
	out, err := n.command("info").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no node in") {
		t.Fatalf("info on an empty dir: %v, %s", err, out)
	}
}

func TestContactsAndCronjob(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "node")
	// A second node only to have a valid address to add.
	peerDir := filepath.Join(t.TempDir(), "peer")
	peer := startNode(t, peerDir, "--listen", "127.0.0.1:0")
	peerAddr := peer.info()["address"].(string)

	n := startNode(t, dataDir, "--listen", "127.0.0.1:0")
	run := func(args ...string) (string, error) {
		out, err := n.command(args...).CombinedOutput()
		return string(out), err
	}
	typo := []byte(peerAddr)
	typo[10] ^= 1 // one character changed
	if out, err := run("contacts", "add", string(typo), "bob"); err == nil || !strings.Contains(out, "invalid address") {
		t.Fatalf("mistyped address: %v, %s", err, out)
	}
	if out, err := run("contacts", "add", peerAddr, "Bob"); err != nil {
		t.Fatalf("contacts add: %v, %s", err, out)
	}
	if out, err := run("contacts", "add", peerAddr, "bobby"); err == nil || !strings.Contains(out, "already") {
		t.Fatalf("same address twice: %v, %s", err, out)
	}
	out, err := run("contacts", "list", "--json")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["nickname"] != "Bob" || list[0]["address"] != peerAddr {
		t.Fatalf("contacts list --json: %v, %s", err, out)
	}
	out, err = run("cronjob", "-c")
	if err != nil || !strings.Contains(out, "save") || !strings.Contains(out, "ok") {
		t.Fatalf("cronjob -c: %v, %s", err, out)
	}

	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-n.exited; err != nil {
		t.Fatalf("node exit: %v", err)
	}
	// With the node stopped, the book is read from the store.
	out, err = run("contacts")
	if err != nil || !strings.Contains(out, "Bob") || !strings.Contains(out, peerAddr) {
		t.Fatalf("contacts on the stopped node: %v, %s", err, out)
	}
	if out, err := run("contacts", "remove", "1"); err != nil {
		t.Fatalf("contacts remove: %v, %s", err, out)
	}
	if out, _ := run("contacts"); !strings.Contains(out, "empty") {
		t.Fatalf("after remove: %s", out)
	}
	if out, err := run("cronjob", "-c"); err == nil || !strings.Contains(out, "no node is running") {
		t.Fatalf("cronjob without a node: %v, %s", err, out)
	}
}

func TestHashcashCommand(t *testing.T) {
	n := &testNode{t: t, dataDir: t.TempDir()}
	out, err := n.command("hashcash", "mint", "-b", "12", "alice").Output()
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	stamp := strings.TrimSpace(string(out))
	if !strings.HasPrefix(stamp, "1:12:") {
		t.Fatalf("mint printed %q", stamp)
	}
	if out, err := n.command("hashcash", "check", "-b", "12", "-r", "alice", stamp).CombinedOutput(); err != nil {
		t.Fatalf("check of a good stamp: %v, %s", err, out)
	}
	// As the C tool, which lowercases resources: any case matches.
	if out, err := n.command("hashcash", "check", "-b", "12", "-r", "Alice", stamp).CombinedOutput(); err != nil {
		t.Fatalf("check with the resource in another case: %v, %s", err, out)
	}
	// A usage error is status 2: status 1 means a refused stamp.
	for _, args := range [][]string{{"-b", "12", stamp}, {"-b", "12", "-r", "alice"}} {
		err := n.command(append([]string{"hashcash", "check"}, args...)...).Run()
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("check %v: %v, want exit status 2", args, err)
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
		out, err := n.command(append([]string{"hashcash", "check"}, tc.args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("check %v: %v, %s; want exit 1 and %q", tc.args, err, out, tc.want)
		}
	}
	out, err = n.command("hashcash", "speed", "-d", "100ms").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 {
		t.Fatalf("speed: %v, %q", err, out)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 0 || f[0] == "0" {
			t.Fatalf("speed line %q does not start with a rate", l)
		} else if _, err := strconv.Atoi(f[0]); err != nil {
			t.Fatalf("speed line %q does not start with an integer", l)
		}
	}
}

// waitInfo polls `info --json` until ok accepts it: across processes the
// node's answers are the only signal there is.
func (n *testNode) waitInfo(what string, ok func(map[string]any) bool) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		in := n.info()
		if ok(in) {
			return in
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not reached; last info %v", what, in)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func peers(in map[string]any) int {
	p, _ := in["peers"].(float64)
	return int(p)
}

func TestThreeBinariesConnect(t *testing.T) {
	a := startNode(t, filepath.Join(t.TempDir(), "a"), "--listen", "127.0.0.1:0")
	aAddr := a.info()["address"].(string)
	aListen := listenAddr(t, a)
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--connect", aAddr+"@"+aListen)
	bListen := listenAddr(t, b)
	c := startNode(t, filepath.Join(t.TempDir(), "c"), "--listen", "127.0.0.1:0", "--connect", aListen, "--connect", bListen)

	in := a.waitInfo("a sees b and c", func(in map[string]any) bool { return peers(in) == 2 })
	if in["peers_in"].(float64) != 2 || in["traffic_in"].(float64) == 0 || in["traffic_out"].(float64) == 0 {
		t.Fatalf("a's info: %v", in)
	}
	c.waitInfo("c sees a and b", func(in map[string]any) bool { return peers(in) == 2 && in["peers_out"].(float64) == 2 })
	b.waitInfo("b sees a and c", func(in map[string]any) bool { return peers(in) == 2 })

	// A node that expects another address at a's port is refused.
	wrong := startNode(t, filepath.Join(t.TempDir(), "w"), "--listen", "127.0.0.1:0", "--connect", b.info()["address"].(string)+"@"+aListen)
	in = wrong.waitInfo("the wrong address refused", func(in map[string]any) bool {
		targets, _ := in["connect"].([]any)
		if len(targets) != 1 {
			return false
		}
		errText, _ := targets[0].(map[string]any)["last_error"].(string)
		return strings.Contains(errText, "address mismatch")
	})
	if peers(in) != 0 {
		t.Fatalf("node dialling a with b's address has peers: %v", in)
	}
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

func TestBinariesJoinTheDHT(t *testing.T) {
	seed := startNode(t, filepath.Join(t.TempDir(), "seed"), "--listen", "127.0.0.1:0", "--node-find-bits", "8")
	in := seed.info()
	if in["dht_nodes"] != float64(0) || !strings.Contains(fmt.Sprint(in["dht_note"]), "no bootstrap nodes") {
		t.Fatalf("a lone node's info does not say its table is empty: %v", in)
	}
	seedTarget := in["address"].(string) + "@" + listenAddr(t, seed)
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--bootstrap", seedTarget)
	c := startNode(t, filepath.Join(t.TempDir(), "c"), "--listen", "127.0.0.1:0", "--bootstrap", seedTarget)
	// c's self-lookup goes through the seed to b: b learns c, and c b.
	b.waitInfo("b knows the seed and c", func(in map[string]any) bool { return in["dht_nodes"] == float64(2) })
	c.waitInfo("c knows the seed and b", func(in map[string]any) bool {
		return in["dht_nodes"] == float64(2) && in["buckets"].(float64) >= 1
	})
	for _, flag := range []string{"-p", "-b"} {
		out, err := b.command("cronjob", flag).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok") {
			t.Fatalf("cronjob %s: %v, %s", flag, err, out)
		}
	}
}
