package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phpchat/phpchat-node/node/identity"
)

func env(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.yml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:1111\nnickname: fromfile\nlog-level: warn\nmail-domain: file.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flags := Map{Origin: "flag", Values: map[string]string{"listen": "127.0.0.1:3333"}}
	e := env(map[string]string{"PHPCHAT_LISTEN": "127.0.0.1:2222", "PHPCHAT_NICKNAME": "fromenv"})
	s, err := Resolve(flags, e, file)
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != "127.0.0.1:3333" {
		t.Errorf("listen = %q, want the flag's value", s.Listen)
	}
	if s.Nickname != "fromenv" {
		t.Errorf("nickname = %q, want the environment's value", s.Nickname)
	}
	if s.LogLevel != slog.LevelWarn || s.MailDomain != "file.example" {
		t.Errorf("log-level %v, mail-domain %q: want the file's values", s.LogLevel, s.MailDomain)
	}
	if s.LogFormat != "text" {
		t.Errorf("log-format = %q, want the default", s.LogFormat)
	}
}

func TestResolveRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"listen", "0.0.0.0:70000", "out of range"},
		{"listen", "0.0.0.0:-1", "out of range"},
		{"listen", "nohostport", "not host:port"},
		{"log-level", "loud", "unknown log level"},
		{"log-format", "xml", "unknown log format"},
		{"nickname", "", "empty"},
		{"nickname", strings.Repeat("x", MaxNicknameLen+1), "at most"},
		{"nickname", "bad\x07bell", "control"},
		{"mail-domain", "not a domain", "not a domain"},
		{"shutdown-timeout", "soon", "positive duration"},
		{"connect", "10.0.0.1", "not host:port"},
		{"connect", "127.0.0.1:1,@127.0.0.1:2", "empty address"},
		{"connect", "h:0", "out of range"},
		{"max-inbound", "many", "whole number"},
		{"max-per-ip", "0", "below the minimum, 1"},
		{"max-frame", "100", "below the minimum, 1048576"},
		{"miners", "-1", "below the minimum, 0"},
		{"miners", "5000", "above the maximum, 1024"},
		{"idle-timeout", "-1s", "positive duration"},
		// Values that parse but would leave the node unable to work.
		{"idle-timeout", "1ns", "1ns is below the minimum, 2s"},
		{"handshake-timeout", "1ns", "1ns is below the minimum, 1s"},
		{"handshake-timeout", "1h", "above the maximum, 5m0s"},
		{"shutdown-timeout", "1ms", "below the minimum, 1s"},
		{"talk-timeout", "10ms", "below the minimum, 1s"},
		{"max-inbound", "0", "below the minimum, 1"},
		{"max-outbound", "0", "below the minimum, 1"},
		{"listen", "999.1.1.1:0", `host "999.1.1.1" of "999.1.1.1:0" is not an IP address`},
		{"listen", "a_b:0", "neither an IP address nor a host name"},
		{"bootstrap", "pc1xyz@127.0.0.1:5", `"pc1xyz@127.0.0.1:5": invalid address "pc1xyz"`},
		{"nickname", "bob smith", "not one word"},
		{"nickname", "bob\u0085", "not one word"},
		{"nickname", "bob\u009b", "control"},
	} {
		_, err := Resolve(Map{Origin: "flag", Values: map[string]string{tc.key: tc.value}})
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s=%q: err = %v, want a setting error", tc.key, tc.value, err)
			continue
		}
		if se.Key != tc.key || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "flag "+tc.key) {
			t.Errorf("%s=%q: err = %q, want key, origin and %q", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestListSetting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.yml")
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	target := id.Address.String() + "@[::1]:25002"
	os.WriteFile(path, []byte("connect:\n  - 127.0.0.1:25001\n  - "+target+"\n"), 0o600)
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Resolve(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Connect) != 2 || s.Connect[1] != target {
		t.Fatalf("connect from file = %q", s.Connect)
	}
	s, err = Resolve(env(map[string]string{"PHPCHAT_CONNECT": "a:1, b:2"}), f)
	if err != nil || len(s.Connect) != 2 || s.Connect[0] != "a:1" {
		t.Fatalf("connect from environment = %q, %v", s.Connect, err)
	}
}

func TestGoodValues(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"listen", ":25000"},
		{"listen", "[::]:0"},
		{"listen", "localhost:0"},
		{"listen", "[fe80::1%eth0]:25000"},
		{"nickname", "bob_smith"},
		{"nickname", "Zoë"},
		{"idle-timeout", "2s"},
		{"handshake-timeout", "1s"},
		{"max-inbound", "1"},
	} {
		if _, err := Resolve(Map{Origin: "flag", Values: map[string]string{tc.key: tc.value}}); err != nil {
			t.Errorf("%s=%q: %v", tc.key, tc.value, err)
		}
	}
}

// A value found unusable after Resolve is refused naming where it came
// from.
func TestRefuseNamesOrigin(t *testing.T) {
	s, err := Resolve(Map{Origin: "flag", Values: map[string]string{"listen": "127.0.0.1:1"}}, env(map[string]string{"PHPCHAT_BOOTSTRAP": "h:1"}))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"listen": "flag listen", "bootstrap": "environment PHPCHAT_BOOTSTRAP", "nickname": "default"} {
		if got := s.Origin(key); got != want {
			t.Errorf("Origin(%s) = %q, want %q", key, got, want)
		}
	}
	err = s.Refuse("listen", errors.New("address already in use"))
	if got := err.Error(); got != "setting listen (flag listen): address already in use" {
		t.Errorf("Refuse: %q", got)
	}
}

func TestReadFileRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"unknown key": {"listen: 127.0.0.1:1\nlisten_port: 3\n", `line 2: unknown key "listen_port"`},
		"bad yaml":    {"listen: [unclosed\n", "yaml"},
		"not a map":   {"- a\n- b\n", "want a mapping"},
		"list value":  {"nickname: [a, b]\n", `key "nickname" wants a single value`},
		"duplicate":   {"nickname: a\nnickname: b\n", "nickname"},
	} {
		path := filepath.Join(t.TempDir(), "settings.yml")
		if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestFileValueNamesLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.yml")
	os.WriteFile(path, []byte("# comment\nlisten: 1.2.3.4:99999\n"), 0o600)
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(f)
	if err == nil || !strings.Contains(err.Error(), "setting listen ("+path+" line 2)") {
		t.Fatalf("err = %v, want it to name the file and line", err)
	}
}

func TestCreateWritesEveryDefault(t *testing.T) {
	l := Layout{Dir: filepath.Join(t.TempDir(), "data")}
	created, err := l.Create()
	if err != nil || !created {
		t.Fatalf("Create: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(l.Dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode: %v %v", fi.Mode(), err)
	}
	b, err := os.ReadFile(l.Settings())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Table {
		if !strings.Contains(string(b), "\n"+d.Key+": ") || !strings.Contains(string(b), d.Usage) {
			t.Errorf("settings.yml lacks %s or its comment", d.Key)
		}
	}
	f, err := ReadFile(l.Settings())
	if err != nil {
		t.Fatalf("written file does not read back: %v", err)
	}
	s, err := Resolve(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Nickname, "user_") || len(s.Nickname) != 9 {
		t.Errorf("nickname %q, want user_xxxx", s.Nickname)
	}
	if created, err := l.Create(); err != nil || created {
		t.Fatalf("second Create: created=%v err=%v; must keep the file", created, err)
	}
}

func TestLockRefusesSecondHolder(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	k, err := l.Lock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Lock() // a second open file description: flock conflicts
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second Lock: %v, want ErrLocked naming a pid", err)
	}
	if err := k.Unlock(); err != nil {
		t.Fatal(err)
	}
	k, err = l.Lock()
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	k.Unlock()
}
