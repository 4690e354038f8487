package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node/identity"
)

// result is what a command run in process printed and its exit status,
// as main would exit.
type result struct {
	code           int
	stdout, stderr string
}

// runApp runs the command line args through newApp in this process.
func runApp(t *testing.T, args ...string) result {
	t.Helper()
	return runAppContext(t, context.Background(), nil, args...)
}

// runAppContext is runApp with a context and, if not nil, a writer for
// standard error.
func runAppContext(t *testing.T, ctx context.Context, stderr *lockedBuffer, args ...string) result {
	t.Helper()
	var out bytes.Buffer
	if stderr == nil {
		stderr = new(lockedBuffer)
	}
	app := newApp()
	app.Writer, app.ErrWriter = &out, stderr
	err := app.RunContext(ctx, append([]string{"phpchat-node"}, args...))
	r := result{stdout: out.String()}
	var ec cli.ExitCoder
	switch {
	case err == nil:
	case errors.As(err, &ec):
		r.code = ec.ExitCode()
		stderr.WriteString(err.Error())
	default:
		r.code = 1
		stderr.WriteString(err.Error())
	}
	r.stderr = stderr.String()
	return r
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, with a hook
// called after each write.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(string)
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.b.Write(p)
	s, hook := l.b.String(), l.onWrite
	l.mu.Unlock()
	if hook != nil {
		hook(s)
	}
	return n, err
}

func (l *lockedBuffer) WriteString(s string) { l.Write([]byte(s)) }

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (r result) expect(t *testing.T, code int, texts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d; stderr %q", r.code, code, r.stderr)
	}
	for _, want := range texts {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q, want it to contain %q", r.stderr, want)
		}
	}
}

// clearEnv unsets the PHPCHAT_* variables of the test's environment.
func clearEnv(t *testing.T) {
	for _, d := range config.Table {
		if _, ok := os.LookupEnv(d.Env()); ok {
			t.Setenv(d.Env(), "")
			os.Unsetenv(d.Env())
		}
	}
}

func noDataDir(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a refused command (%v): nothing may be created", dir, err)
	}
}

// Settings that pass a syntax check but would break the node stop run
// with status 2, naming the setting and where its value came from, before
// the data dir, the key or the store is made.
func TestRunRefusesUnusableSettings(t *testing.T) {
	clearEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		env  [2]string
		want string
	}{
		{"idle-timeout 1ns", []string{"--idle-timeout", "1ns"}, [2]string{}, "setting idle-timeout (flag --idle-timeout): 1ns is below the minimum, 2s"},
		{"handshake-timeout 1ns", nil, [2]string{"PHPCHAT_HANDSHAKE_TIMEOUT", "1ns"}, "setting handshake-timeout (environment PHPCHAT_HANDSHAKE_TIMEOUT): 1ns is below the minimum, 1s"},
		{"max-outbound 0", []string{"--max-outbound", "0"}, [2]string{}, "setting max-outbound (flag --max-outbound): 0 is below the minimum, 1"},
		{"listen not an IP", []string{"--listen", "999.1.1.1:0"}, [2]string{}, `setting listen (flag --listen): host "999.1.1.1"`},
		{"listen port in use", []string{"--listen", busy.Addr().String()}, [2]string{}, "setting listen (flag --listen): cannot listen: bind: address already in use"},
		{"listen address not here", nil, [2]string{"PHPCHAT_LISTEN", "192.0.2.1:0"}, "setting listen (environment PHPCHAT_LISTEN): cannot listen: bind: cannot assign requested address"},
		{"bad bootstrap address", nil, [2]string{"PHPCHAT_BOOTSTRAP", "pc1xyz@127.0.0.1:5"}, `setting bootstrap (environment PHPCHAT_BOOTSTRAP): "pc1xyz@127.0.0.1:5": invalid address "pc1xyz"`},
		{"bad connect address", []string{"--listen", "127.0.0.1:0", "--connect", "pc1@h:1"}, [2]string{}, "setting connect (flag --connect): "},
		{"nickname of two words", []string{"--nickname", "bob smith"}, [2]string{}, `setting nickname (flag --nickname): nickname "bob smith" is not one word`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			dir := filepath.Join(t.TempDir(), "node")
			r := runApp(t, append([]string{"--data-dir", dir, "run"}, tc.args...)...)
			r.expect(t, exitSettings, tc.want)
			if strings.Count(r.stderr, "\n") > 0 {
				t.Errorf("refusal is more than one line: %q", r.stderr)
			}
			noDataDir(t, dir)
		})
	}
}

// A value of settings.yml is refused naming the file and line, and the
// data dir is left as it was: no key, no store.
func TestRunRefusesFileSettingBeforeCreating(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "settings.yml"), []byte("listen: 127.0.0.1:0\nidle-timeout: 1ns\n"), 0o600)
	r := runApp(t, "--data-dir", dir, "run")
	r.expect(t, exitSettings, "setting idle-timeout ("+filepath.Join(dir, "settings.yml")+" line 2): 1ns is below the minimum, 2s")
	for _, name := range []string{"node.key", "store", "lock"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s made by a refused run", name)
		}
	}
}

// A node already running on the data dir is named as such, not as a
// listen address in use (it holds both).
func TestRunOnLockedDirSaysSo(t *testing.T) {
	clearEnv(t)
	l := config.Layout{Dir: t.TempDir()}
	lock, err := l.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r := runApp(t, "--data-dir", l.Dir, "run", "--listen", busy.Addr().String())
	r.expect(t, exitFailure, "cannot run: data dir is in use", "held by pid")
}

func TestHashcashRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"mint", "-b", "-1", "x"},
		{"mint", "-b", "161", "x"},
		{"mint", "-w", "-3", "-b", "4", "x"},
		{"mint", "-b", "4"},
		{"check", "-b", "-1", "-r", "x", "1:4:260101:x::a:b"},
		{"speed", "-w", "-3"},
		{"nosuch"},
	} {
		r := runApp(t, append([]string{"hashcash"}, args...)...)
		if r.code != exitSettings || r.stderr == "" {
			t.Errorf("hashcash %s: status %d, %q; want 2 and a message", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	runApp(t, "hashcash", "mint", "-b", "-1", "x").expect(t, exitSettings, "-b -1 out of range (0-160)")
	runApp(t, "hashcash", "mint", "-w", "-3", "x").expect(t, exitSettings, "-w -3 out of range")
}

// A mint that would take years is refused at once with the estimate; with
// --force it starts, saying how long it will take.
func TestHashcashMintEstimates(t *testing.T) {
	r := runApp(t, "hashcash", "mint", "-b", "99", "x")
	r.expect(t, exitSettings, "99 bits would take centuries at ", "hashes/s", "--force")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{onWrite: func(s string) {
		if strings.Contains(s, "would take") {
			cancel() // the estimate is out: stop the mint
		}
	}}
	r = runAppContext(t, ctx, stderr, "hashcash", "mint", "--force", "-b", "99", "x")
	r.expect(t, exitFailure, "hashcash mint: 99 bits would take centuries", "Ctrl-C stops", "context canceled")
}

// Commands other than run never make a data dir: a mistyped --data-dir
// is reported, not created.
func TestCommandsDoNotCreateDataDir(t *testing.T) {
	clearEnv(t)
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"contacts"},
		{"contacts", "list", "--json"},
		{"contacts", "add", id.Address.String(), "bob"},
		{"contacts", "remove", "1"},
		{"info"},
		{"info", "--json"},
		{"cronjob", "-c"},
		{"wait", "--timeout", "1ms"},
	} {
		dir := filepath.Join(t.TempDir(), "typo")
		r := runApp(t, append([]string{"--data-dir", dir}, args...)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, dir) && !strings.Contains(r.stderr, "no node") {
			t.Errorf("%s: status %d, %q; want 1 and that no node is there", strings.Join(args, " "), r.code, r.stderr)
		}
		noDataDir(t, dir)
	}
	dir := filepath.Join(t.TempDir(), "typo")
	runApp(t, "--data-dir", dir, "contacts").expect(t, exitFailure, "no node in "+dir)
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"info", "extra"}, "usage: phpchat-node info"},
		{[]string{"info", "--count", "3"}, "--count is for live statistics: add -c"},
		{[]string{"info", "--interval", "2s", "--json"}, "--interval is for live statistics"},
		{[]string{"nosuch"}, `unknown command "nosuch" (` + "`phpchat-node --help`"},
		{[]string{"hashcash", "nosuch"}, `unknown command "nosuch" (` + "`phpchat-node hashcash --help`"},
		{[]string{"wait", "extra"}, "usage: phpchat-node wait"},
		{[]string{"wait", "--timeout", "0s"}, "not a positive duration"},
		{[]string{"contacts", "add", "pc1nope", "bob"}, `invalid address "pc1nope"`},
	} {
		r := runApp(t, append([]string{"--data-dir", dir}, tc.args...)...)
		if r.code != exitSettings || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: status %d, %q; want 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if r := runApp(t); r.code != 0 || !strings.Contains(r.stdout, "COMMANDS") {
		t.Errorf("no arguments: status %d, %q; want the help", r.code, r.stdout)
	}
}

// One nickname rule: contacts add refuses what settings refuse.
func TestContactsAddNicknameRule(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r := runApp(t, "--data-dir", t.TempDir(), "contacts", "add", id.Address.String(), "bob smith")
	r.expect(t, exitSettings, `contacts add: nickname "bob smith" is not one word`)
}

// The help says where the settings are listed, run --help lists each,
// and the nickname's default is the one a new node gets.
func TestHelpListsSettings(t *testing.T) {
	top := runApp(t, "--help")
	if !strings.Contains(top.stdout, "phpchat-node run --help") {
		t.Errorf("--help does not say where the settings are:\n%s", top.stdout)
	}
	run := runApp(t, "run", "--help")
	for _, d := range config.Table {
		if d.Key == "log-level" || d.Key == "log-format" {
			if !strings.Contains(top.stdout, "--"+d.Key) {
				t.Errorf("--help lacks the global setting --%s", d.Key)
			}
			continue
		}
		if !strings.Contains(run.stdout, "--"+d.Key+" ") {
			t.Errorf("run --help lacks --%s", d.Key)
		}
	}
	if !strings.Contains(run.stdout, "(default: user_xxxx, random") {
		t.Errorf("run --help shows another nickname default than user_xxxx:\n%s", run.stdout)
	}
}

// wait gives up after its timeout when no node runs, with status 1.
func TestWaitWithoutNode(t *testing.T) {
	dir := t.TempDir()
	r := runApp(t, "--data-dir", dir, "wait", "--timeout", "50ms")
	r.expect(t, exitFailure, "wait: no node ready in "+dir+" after 50ms: ")
	if strings.Contains(r.stderr, "i/o timeout") {
		t.Errorf("wait gave its own timeout as the reason: %q", r.stderr)
	}
}
