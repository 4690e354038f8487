package main

import (
	"encoding/json"
	"errors"
	"fmt"
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

// The end-to-end tests of this file run the phpchat-node binary, for what
// only a real process shows: signals, systemd's notifications, the exit
// status, several processes on one network.

// builtBinary is the phpchat-node that testBinary builds once.
var builtBinary struct {
	once sync.Once
	dir  string // removed by TestMain
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary.dir != "" {
		os.RemoveAll(builtBinary.dir)
	}
	os.Exit(code)
}

// testBinary returns the path of a phpchat-node built from this package,
// building it on the first call. It is a plain build, without -race, so that
// it needs no C compiler. The test is skipped if the go command is missing.
func testBinary(t testing.TB) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("end-to-end test skipped: no go command on PATH to build phpchat-node: %v", err)
	}
	b := &builtBinary
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "phpchat-bin")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "phpchat-node")
		if out, err := exec.Command(goCmd, "build", "-o", b.path, ".").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("building phpchat-node: %v", b.err)
	}
	return b.path
}

// command returns an exec.Cmd of the binary on the node's data dir.
func (n *testNode) command(args ...string) *exec.Cmd {
	n.t.Helper()
	cmd := exec.Command(testBinary(n.t), append([]string{"--data-dir", n.dataDir}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	return cmd
}

// startNode runs the binary's `run` and waits for it to tell systemd's
// socket READY=1. The process is killed at the end of the test.
func startNode(t *testing.T, dataDir string, args ...string) *testNode {
	t.Helper()
	notify, sock := notifySocket(t)
	n := &testNode{t: t, dataDir: dataDir, notify: notify, done: make(chan struct{})}
	n.cmd = n.command(append([]string{"run"}, args...)...)
	n.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	n.cmd.Stderr = &n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.stop = func() { n.cmd.Process.Signal(syscall.SIGTERM) }
	go func() {
		n.exitErr = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("node log:\n%s", n.stderr.String())
		}
	})
	n.waitReady()
	return n
}

// expectNotify waits for the node's next notification to systemd.
func (n *testNode) expectNotify(want string) {
	n.t.Helper()
	buf := make([]byte, 256)
	n.notify.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := n.notify.Read(buf)
	if err != nil {
		n.t.Fatalf("waiting for %s from the node: %v", want, err)
	}
	if string(buf[:got]) != want {
		n.t.Fatalf("node notified %q, want %q", buf[:got], want)
	}
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
	out, errOut, code := n.cli("info", "-c", "--json", "--count", "3", "--interval", "50ms")
	if code != 0 {
		t.Fatalf("info -c: exit status %d, %s", code, errOut)
	}
	samples := strings.Split(strings.TrimSpace(out), "\n")
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
	if _, errOut, code := n.cli("run", "--listen", "127.0.0.1:0"); code != exitFailure || !strings.Contains(errOut, "pid "+strconv.Itoa(n.cmd.Process.Pid)) {
		t.Fatalf("second run: exit status %d, %s; want a refusal naming pid %d", code, errOut, n.cmd.Process.Pid)
	}

	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.expectNotify("STOPPING=1")
	if err := n.wait(); err != nil {
		t.Fatalf("node exited with %v after SIGTERM, want status 0", err)
	}

	in = n.info()
	if in["running"] != false || in["address"] != addr {
		t.Fatalf("info of the stopped node: %v", in)
	}
	if _, errOut, code := n.cli("info", "-c"); code != exitFailure || !strings.Contains(errOut, "no node is running") {
		t.Fatalf("info -c without a running node: exit status %d, %s", code, errOut)
	}

	// The identity survives a restart.
	n = startNode(t, dataDir, "--listen", "127.0.0.1:0")
	if got := n.info()["address"]; got != addr {
		t.Fatalf("address after restart %v, want %v", got, addr)
	}
}

// TestExitStatus checks what only the process shows of a refused command:
// its exit status and its message on stderr.
func TestExitStatus(t *testing.T) {
	bin := testBinary(t)
	for _, tc := range []struct {
		args     []string
		status   int
		wantText string
	}{
		{[]string{"run", "--listen", "0.0.0.0:70000"}, exitSettings, "phpchat-node: setting listen (flag --listen): port"},
		{[]string{"info"}, exitFailure, "phpchat-node: no node in"},
	} {
		cmd := exec.Command(bin, append([]string{"--data-dir", filepath.Join(t.TempDir(), "node")}, tc.args...)...)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tc.status || !strings.Contains(string(out), tc.wantText) {
			t.Errorf("phpchat-node %s: %v, %s; want exit status %d and %q", strings.Join(tc.args, " "), err, out, tc.status, tc.wantText)
		}
	}
}

func TestBinariesJoinTheDHT(t *testing.T) {
	if testing.Short() {
		t.Skip("several processes: skipped in short mode")
	}
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
		out, errOut, code := b.cli("cronjob", flag)
		if code != 0 || !strings.Contains(out, "ok") {
			t.Fatalf("cronjob %s: exit status %d, %s%s", flag, code, out, errOut)
		}
	}
}
