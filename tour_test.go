package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tourScript returns the shell blocks of the README's tour, those between
// <!-- tour:start --> and <!-- tour:end --> markers, as one script.
func tourScript(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)<!-- tour:start[^>]*-->\\s*```sh\\n(.*?)```\\s*<!-- tour:end -->").FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d tour blocks, want the tour and its end", len(blocks))
	}
	var script strings.Builder
	for _, b := range blocks {
		script.Write(b[1])
	}
	return script.String()
}

// The README's tour works as written: pasted into bash in the directory of
// the built binary, six nodes start, join, are looked at and stop cleanly,
// their logs in files and not on the screen.
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six nodes")
	}
	for _, tool := range []string{"bash", "jq", "mktemp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the tour needs %s: %v", tool, err)
		}
	}
	script := tourScript(t)
	dir, tmp := t.TempDir(), t.TempDir()
	if err := os.Symlink(testBinary(t), filepath.Join(dir, "phpchat-node")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// -e: a failing step fails the tour, as a reader would notice.
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "NOTIFY_SOCKET=", "PHPCHAT_DATA_DIR=")
	// The nodes run in bash's process group: on failure, none outlives
	// the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Files, not pipes: the nodes inherit them, and a pipe would keep
	// Wait waiting for the nodes of a failed tour.
	output, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer output.Close()
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	err = cmd.Wait()
	b, _ := os.ReadFile(output.Name())
	out := string(b)
	logs, _ := filepath.Glob(filepath.Join(tmp, "tmp.*", "*.log"))
	if err != nil {
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("the tour failed: %v\noutput:\n%s", err, out)
	}

	if strings.Contains(out, "level=") {
		t.Errorf("node logs on the screen:\n%s", out)
	}
	for _, want := range []string{"Running:      yes", "Peers:        5 (5 in", "added 1 bob", " inbox ", "Hello", "save ", "\n1:20:", "tour=" + tmp} {
		if !strings.Contains(out, want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
	if len(logs) != 6 {
		t.Fatalf("the tour left %d logs, want 6: %v", len(logs), logs)
	}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		log := strings.TrimSpace(string(b))
		if !strings.Contains(log, `msg="node ready"`) || !strings.HasSuffix(log, `msg="node stopped"`) {
			t.Errorf("%s: the node did not start and stop cleanly:\n%s", filepath.Base(l), log)
		}
	}
}

// Ctrl-C (SIGINT) stops the built binary cleanly, with status 0, as the
// README says.
func TestInterruptExitsZero(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "node"), "--listen", "127.0.0.1:0")
	if err := n.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.done:
		if n.exitErr != nil {
			t.Fatalf("node exited with %v after SIGINT, want status 0", n.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node did not stop within 30 s of SIGINT")
	}
	if !strings.Contains(n.stderr.String(), `msg="node stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", n.stderr.String())
	}
}
