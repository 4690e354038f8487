package main

import (
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoginURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:21080", "http://127.0.0.1:21080/login?token=abc"},
		{"http://127.0.0.1:21080/", "http://127.0.0.1:21080/login?token=abc"},
		{"https://0.0.0.0:443", "https://localhost:443/login?token=abc"},
		{"[::1]:8080", "http://[::1]:8080/login?token=abc"},
	} {
		if got := loginURL(tc.addr, "abc"); got != tc.want {
			t.Errorf("loginURL(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// run --web serves the web console; web url prints the address that logs
// a browser in, and only with it does the page answer.
func TestWebConsoleLogin(t *testing.T) {
	n := startInProcess(t, filepath.Join(t.TempDir(), "n"), "--listen", "127.0.0.1:0", "--web", "--web-listen", "127.0.0.1:0")
	in := n.waitInfo("the web console listens", func(in map[string]any) bool {
		u, _ := in["web"].(string)
		return u != "" && !strings.HasSuffix(u, ":0/")
	})
	base := strings.TrimSuffix(in["web"].(string), "/")
	out, errOut, code := n.cli("web", "url")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), base+"/login?token=") {
		t.Fatalf("web url: %d %q %q; want a login URL at %s", code, out, errOut, base)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if resp, err := client.Get(base + "/"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the page without logging in: %v %v, want 401", resp, err)
	}
	if resp, err := client.Get(base + "/login?token=wrong"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %v %v, want 401", resp, err)
	}
	resp, err := client.Get(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = client.Get(base + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the page after logging in: %v %v, want 200", resp, err)
	}
	resp.Body.Close()
}
