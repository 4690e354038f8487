package smtpgw

import "testing"

func TestRewrite(t *testing.T) {
	const from = `"Alice" <pc1x@phpchat.lan>`
	id := func() string { return "<new@phpchat.lan>" }
	tests := []struct{ name, in, want string }{
		{"from replaced in place, bcc removed, id kept",
			"Subject: hi\r\nFrom: Mallory <m@example.org>\r\nBcc: a@phpchat.lan,\r\n b@phpchat.lan\r\nMessage-ID: <1@x>\r\nTo: b@phpchat.lan\r\n\r\nbody\r\n.. dots\r\n",
			"Subject: hi\r\nFrom: " + from + "\r\nMessage-ID: <1@x>\r\nTo: b@phpchat.lan\r\n\r\nbody\r\n.. dots\r\n"},
		{"id added, from added, folded fields kept",
			"To: b@phpchat.lan,\r\n\tc@phpchat.lan\r\nX-Odd :  v\r\n\r\n\xff\xfe 8-bit\r\n",
			"To: b@phpchat.lan,\r\n\tc@phpchat.lan\r\nX-Odd :  v\r\nFrom: " + from + "\r\nMessage-ID: <new@phpchat.lan>\r\n\r\n\xff\xfe 8-bit\r\n"},
		{"two from fields, empty message-id, bcc any case",
			"FROM: a\r\nBCC: x\r\nfrom: b\r\nMessage-Id:\r\n\r\nb",
			"From: " + from + "\r\nMessage-Id:\r\nMessage-ID: <new@phpchat.lan>\r\n\r\nb"},
		{"no header", "just text\r\n", "From: " + from + "\r\nMessage-ID: <new@phpchat.lan>\r\n\r\njust text\r\n"},
		{"empty header", "\r\ntext\r\n", "From: " + from + "\r\nMessage-ID: <new@phpchat.lan>\r\n\r\ntext\r\n"},
		{"header without body", "Subject: x", "Subject: x\r\nFrom: " + from + "\r\nMessage-ID: <new@phpchat.lan>\r\n"},
		{"LF line ends", "Subject: x\nBcc: y\n\nbody\n", "Subject: x\nFrom: " + from + "\nMessage-ID: <new@phpchat.lan>\n\nbody\n"},
		{"empty", "", "From: " + from + "\r\nMessage-ID: <new@phpchat.lan>\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(rewrite([]byte(tt.in), from, id)); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestLoginMechanism(t *testing.T) {
	var user, pass string
	auth := func(u, p string) error { user, pass = u, p; return nil }
	a := &loginServer{auth: auth}
	if c, done, _ := a.Next(nil); string(c) != "Username:" || done {
		t.Fatalf("first challenge %q", c)
	}
	if c, done, _ := a.Next([]byte("me")); string(c) != "Password:" || done {
		t.Fatalf("second challenge %q", c)
	}
	if _, done, err := a.Next([]byte("pw")); !done || err != nil || user != "me" || pass != "pw" {
		t.Fatalf("done %v, err %v, user %q, pass %q", done, err, user, pass)
	}
	if _, _, err := a.Next([]byte("more")); err == nil {
		t.Fatal("a fourth step is accepted")
	}
	// the user name with AUTH LOGIN, even empty
	a = &loginServer{auth: auth}
	if c, _, _ := a.Next([]byte{}); string(c) != "Password:" {
		t.Fatalf("challenge after an initial response %q", c)
	}
}
