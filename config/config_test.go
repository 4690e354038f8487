package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"max-per-ip", "0", "out of range"},
		{"max-frame", "100", "out of range"},
		{"miners", "-1", "out of range"},
		{"idle-timeout", "-1s", "positive duration"},
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
	os.WriteFile(path, []byte("connect:\n  - 127.0.0.1:25001\n  - pc1x@[::1]:25002\n"), 0o600)
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Resolve(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Connect) != 2 || s.Connect[1] != "pc1x@[::1]:25002" {
		t.Fatalf("connect from file = %q", s.Connect)
	}
	s, err = Resolve(env(map[string]string{"PHPCHAT_CONNECT": "a:1, b:2"}), f)
	if err != nil || len(s.Connect) != 2 || s.Connect[0] != "a:1" {
		t.Fatalf("connect from environment = %q, %v", s.Connect, err)
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
