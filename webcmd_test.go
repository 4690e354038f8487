package main

import "testing"

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
