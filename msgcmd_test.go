package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

func TestBuildMessage(t *testing.T) {
	from := mail.Address{Name: "alice", Address: "pc1alice@phpchat.lan"}
	to := mail.Address{Name: "Bøb", Address: "pc1bob@phpchat.lan"}
	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	binary := make([]byte, 3000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	content, err := buildMessage(draft{
		From: from, To: to, Subject: "Grüße aus Köln", Date: date,
		Body:        []byte("Hallo Bob,\nça va?\n"),
		Attachments: []attachment{{Name: "résumé.pdf", Data: binary}, {Name: "notes", Data: []byte("plain")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(content))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, content)
	}
	if got, _ := m.Header.AddressList("From"); len(got) != 1 || *got[0] != from {
		t.Errorf("From %v", got)
	}
	if got, _ := m.Header.AddressList("To"); len(got) != 1 || *got[0] != to {
		t.Errorf("To %v", got)
	}
	if s := m.Header.Get("Subject"); !strings.HasPrefix(s, "=?utf-8?") || decodeHeader(s) != "Grüße aus Köln" {
		t.Errorf("Subject %q, want RFC 2047 words of the subject", s)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date %v, %v", d, err)
	}
	if !regexp.MustCompile(`^<[0-9a-f]{32}@phpchat\.lan>$`).MatchString(m.Header.Get("Message-ID")) || m.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("Message-ID %q, MIME-Version %q", m.Header.Get("Message-ID"), m.Header.Get("MIME-Version"))
	}
	for _, line := range strings.SplitAfter(string(content), "\n") {
		if !strings.HasSuffix(line, "\r\n") && line != "" {
			t.Fatalf("line %q does not end in CRLF", line)
		}
	}
	ctype, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || ctype != "multipart/mixed" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []*multipart.Part
	var data [][]byte
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			if b, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", "")); err != nil {
				t.Fatalf("part %d: %v", len(parts), err)
			}
		}
		parts, data = append(parts, p), append(data, b)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want the text and two attachments", len(parts))
	}
	if parts[0].Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(data[0]) != "Hallo Bob,\r\nça va?\r\n" {
		t.Errorf("text part %v %q", parts[0].Header, data[0])
	}
	for i, want := range []struct {
		name, ctype string
		data        []byte
	}{{"résumé.pdf", "application/pdf", binary}, {"notes", "application/octet-stream", []byte("plain")}} {
		p := parts[i+1]
		if p.FileName() != want.name || p.Header.Get("Content-Type") != want.ctype || !bytes.Equal(data[i+1], want.data) {
			t.Errorf("attachment %d: %q %q, %d bytes; want %q %q, %d bytes byte for byte", i, p.FileName(), p.Header.Get("Content-Type"), len(data[i+1]), want.name, want.ctype, len(want.data))
		}
	}
	r, err := readMessageText(content)
	if err != nil || r.Text != "Hallo Bob,\nça va?\n" || len(r.Attachments) != 2 || r.Attachments[0] != "résumé.pdf (application/pdf, 3000 bytes)" {
		t.Errorf("as the console reads it: %v, %+v", err, r)
	}

	// Without attachments: text/plain; a body that is not UTF-8 goes in
	// quoted-printable and comes back as it was.
	content, err = buildMessage(draft{From: from, To: to, Subject: "plain", Date: date, Body: []byte("caf\xe9\n")})
	if err != nil {
		t.Fatal(err)
	}
	m, err = mail.ReadMessage(bytes.NewReader(content))
	if err != nil || m.Header.Get("Content-Type") != "text/plain; charset=utf-8" || m.Header.Get("Subject") != "plain" || m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Fatalf("%v: %v", err, m.Header)
	}
	if r, err := readMessageText(content); err != nil || r.Text != "caf\xe9\n" {
		t.Errorf("quoted-printable body came back as %q, %v", r.Text, err)
	}
}

// cliStdin runs the command line in process on n's data dir, with stdin
// as its standard input.
func (n *testNode) cliStdin(stdin string, args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	f, err := os.CreateTemp(n.t.TempDir(), "stdin")
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(stdin); err != nil {
		n.t.Fatal(err)
	}
	f.Seek(0, io.SeekStart)
	old := os.Stdin
	os.Stdin = f // urfave/cli reads os.Stdin when the app has no Reader
	defer func() { os.Stdin = old }()
	return n.cli(args...)
}

// messages runs `messages --json` and decodes it.
func (n *testNode) messages() []msgapi.Summary {
	n.t.Helper()
	out, errOut, code := n.cli("messages", "--json")
	var list []msgapi.Summary
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		n.t.Fatalf("messages --json: exit status %d, %s%s", code, out, errOut)
	}
	return list
}

// waitMessages polls `messages --json` until ok accepts the listing, for
// up to timeout: the listing is the only signal of what the node received.
func (n *testNode) waitMessages(what string, timeout time.Duration, ok func([]msgapi.Summary) bool) []msgapi.Summary {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		list := n.messages()
		if ok(list) {
			return list
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not reached in %s; last listing %+v", what, timeout, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// find returns the message of a listing with the id, in the box.
func find(list []msgapi.Summary, box, id string) (msgapi.Summary, bool) {
	for _, m := range list {
		if m.ID == id && m.Box == box {
			return m, true
		}
	}
	return msgapi.Summary{}, false
}

func TestSendAndMessages(t *testing.T) {
	a := startInProcess(t, filepath.Join(t.TempDir(), "a"), "--listen", "127.0.0.1:0", "--nickname", "alice")
	b := startInProcess(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0", "--connect", listenAddr(t, a))
	a.waitInfo("a has a session with b", func(in map[string]any) bool { return peers(in) == 1 })
	bAddr := b.info()["address"].(string)
	if _, errOut, code := a.cli("contacts", "add", bAddr, "bob"); code != 0 {
		t.Fatalf("contacts add: %s", errOut)
	}
	file := filepath.Join(t.TempDir(), "photo.png")
	png := []byte("\x89PNG\r\n\x1a\n\x00\x01binary")
	if err := os.WriteFile(file, png, 0o600); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := a.cliStdin("Hello Bob,\nsee the photo.\n", "send", "--to", "Bob", "--subject", "Grüße", "--attach", file)
	id := strings.TrimSpace(out)
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("send: exit status %d, %q, %s", code, out, errOut)
	}
	// The outbox has it at once: send answers once it is on disk.
	if m, ok := find(a.messages(), "outbox", id); !ok || m.Peer != bAddr || m.Subject != "Grüße" {
		t.Fatalf("a's outbox after send: %+v", a.messages())
	}

	list := b.waitMessages("the message reaches b", 30*time.Second, func(l []msgapi.Summary) bool { _, ok := find(l, "inbox", id); return ok })
	if m, _ := find(list, "inbox", id); m.Read || m.Subject != "Grüße" || m.Peer != a.info()["address"] {
		t.Fatalf("b's inbox: %+v", m)
	}
	out, _, _ = b.cli("messages")
	if !regexp.MustCompile(`(?m)^\*\s+` + id + `\s+inbox\s+unread\s`).MatchString(out) {
		t.Fatalf("messages does not mark the unread message:\n%s", out)
	}
	// read prints the message as stored; the attachment is in it.
	out, errOut, code = b.cli("messages", "read", id[:10])
	if code != 0 || !strings.Contains(out, "Subject: =?utf-8?") || !strings.Contains(out, "Hello Bob,\r\nsee the photo.") {
		t.Fatalf("messages read: exit status %d, %s%s", code, out, errOut)
	}
	r, err := readMessageText([]byte(out))
	if err != nil || len(r.Attachments) != 1 || !strings.HasPrefix(r.Attachments[0], "photo.png (image/png, ") {
		t.Fatalf("the message read: %v, %+v", err, r)
	}
	if m, _ := find(b.messages(), "inbox", id); !m.Read {
		t.Fatalf("after read, b's inbox shows %+v, want it read", m)
	}
	a.waitMessages("a sees the message delivered", 30*time.Second, func(l []msgapi.Summary) bool {
		m, _ := find(l, "outbox", id)
		return m.State == msgapi.StateDelivered
	})
	if out, errOut, code := b.cli("messages", "delete", id); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("messages delete: exit status %d, %s%s", code, out, errOut)
	}
	if _, ok := find(b.messages(), "inbox", id); ok {
		t.Fatal("the message is still listed after delete")
	}

	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"x", []string{"send", "--subject", "s"}, exitSettings, sendUsage},
		{"x", []string{"send", "--to", "carol"}, exitFailure, `"carol" is neither an address nor a nickname`},
		{"x", []string{"send", "--to", bAddr, "extra"}, exitSettings, "unexpected arguments"},
		{"x", []string{"send", "--to", bAddr, "--attach", filepath.Join(t.TempDir(), "none")}, exitFailure, "attachment: "},
		{"x", []string{"send", "--to", a.info()["address"].(string)}, exitFailure, "own address"},
		{"", []string{"messages", "read"}, exitSettings, "usage: phpchat-node messages read ID"},
		{"", []string{"messages", "read", "ffff"}, exitFailure, `message "ffff": no such message`},
		{"", []string{"messages", "delete", "ffff"}, exitFailure, "no such message"},
		{"", []string{"messages", "extra"}, exitSettings, messagesUsage},
	} {
		out, errOut, code := a.cliStdin(tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit status %d, %s%s; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	// A message to a node that nobody can reach waits in the outbox.
	out, errOut, code = a.cliStdin("are you there?", "send", "--to", other.Address.String())
	if code != 0 {
		t.Fatalf("send to an unreachable node: %d, %s", code, errOut)
	}
	if m, ok := find(a.messages(), "outbox", strings.TrimSpace(out)); !ok || m.State == msgapi.StateDelivered {
		t.Fatalf("a's outbox: %+v", a.messages())
	}

	none := &testNode{t: t, dataDir: filepath.Join(t.TempDir(), "none")}
	for _, args := range [][]string{{"messages"}, {"send", "--to", bAddr}} {
		if _, errOut, code := none.cliStdin("x", args...); code != exitFailure || !strings.Contains(errOut, "no node is running") {
			t.Errorf("%v without a node: exit status %d, %s", args, code, errOut)
		}
	}
}

// TestSendSurvivesSIGKILL: a message whose id `send` printed is on disk,
// whatever happens to the node next.
func TestSendSurvivesSIGKILL(t *testing.T) {
	// A alone: nobody to deliver to, so the message stays queued.
	dir := filepath.Join(t.TempDir(), "a")
	a := startNode(t, dir, "--listen", "127.0.0.1:0")
	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := a.cliStdin("survive this\n", "send", "--to", other.Address.String(), "--subject", "kill")
	id := strings.TrimSpace(out)
	a.cmd.Process.Kill() // at once
	if code != 0 || id == "" {
		t.Fatalf("send: exit status %d, %s", code, errOut)
	}
	if err := a.wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("node after SIGKILL: %v", err)
	}
	a = startNode(t, dir, "--listen", "127.0.0.1:0")
	m, ok := find(a.messages(), "outbox", id)
	if !ok || m.Subject != "kill" || m.State == msgapi.StateRefused {
		t.Fatalf("after SIGKILL and restart, the outbox has %+v, want message %s", a.messages(), id)
	}
	if testing.Short() {
		return
	}

	// A with B, its recipient, reachable: the message still arrives.
	b := startNode(t, filepath.Join(t.TempDir(), "b"), "--listen", "127.0.0.1:0")
	bTarget := b.info()["address"].(string) + "@" + listenAddr(t, b)
	dir = filepath.Join(t.TempDir(), "a2")
	a = startNode(t, dir, "--listen", "127.0.0.1:0", "--connect", bTarget)
	a.waitInfo("a has a session with b", func(in map[string]any) bool { return peers(in) == 1 })
	out, errOut, code = a.cliStdin("still there?\n", "send", "--to", b.info()["address"].(string))
	id = strings.TrimSpace(out)
	a.cmd.Process.Kill()
	if code != 0 || id == "" {
		t.Fatalf("send: exit status %d, %s", code, errOut)
	}
	a.wait()
	a = startNode(t, dir, "--listen", "127.0.0.1:0", "--connect", bTarget)
	if _, ok := find(a.messages(), "outbox", id); !ok {
		t.Fatalf("after SIGKILL and restart, the outbox has %+v, want message %s", a.messages(), id)
	}
	// Normally the message arrives within seconds of the restart. In the
	// rare run where A minted its stamp before it was killed, and tried B
	// after the restart before its session with B was up, the next
	// attempt is two minutes later (the outbox's backoff): the deadline
	// covers it.
	b.waitMessages("the message reaches b", 3*time.Minute, func(l []msgapi.Summary) bool { _, ok := find(l, "inbox", id); return ok })
}
