package smtpgw

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os/exec"
	"strings"
	"testing"
)

// sendScript sends one message with Python's smtplib and writes the bytes
// it sent to standard output. Its arguments: host port user password
// recipient body-file attachment-file [cafile for STARTTLS].
const sendScript = `
import smtplib, ssl, sys
from email import policy
from email.message import EmailMessage

host, port, user, password, rcpt, body, attach = sys.argv[1:8]
msg = EmailMessage(policy=policy.SMTP)
msg["From"] = "Someone Else <someone@example.org>"
msg["To"] = rcpt
msg["Bcc"] = "hidden@phpchat.lan"
msg["Subject"] = "Grüße, 8-bit body and a binary attachment"
msg["Message-ID"] = "<python-1@example.org>"
msg.set_content(open(body, encoding="utf-8").read(), charset="utf-8", cte="8bit")
msg.add_attachment(open(attach, "rb").read(), maintype="application", subtype="octet-stream", filename="blob.bin")
raw = msg.as_bytes()
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo()
if len(sys.argv) > 8:
    s.starttls(context=ssl.create_default_context(cafile=sys.argv[8]))
    s.ehlo()
s.login(user, password)
s.sendmail("someone@example.org", [rcpt], raw, mail_options=["BODY=8BITMIME"])
s.quit()
sys.stdout.buffer.write(raw)
`

func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s is not installed: %v", tool, err)
	}
}

// testBody is a UTF-8 text with lines that need dot-stuffing.
const testBody = "Grüße aus Köln — ünïcödé, 日本語, emoji 🚀.\n.A line starting with a dot.\n.\n..\nThe end.\n"

func TestPythonSMTPLib(t *testing.T) {
	need(t, "python3")
	g := startGateway(t, nil)
	sendWithPython(t, g, nil)
	g.sendOK(t)
}

func TestPythonSTARTTLS(t *testing.T) {
	need(t, "python3")
	conf, certPEM := selfSigned(t)
	g := startGateway(t, func(c *Config) { c.TLS = conf })
	g.srv.insecureAuthOK = func(net.Addr) bool { return false } // AUTH only under TLS
	c := dial(t, g.addr)
	ext := c.do(250, "EHLO client.example")
	if !strings.Contains(ext, "STARTTLS") || strings.Contains(ext, "AUTH") {
		t.Fatalf("EHLO before TLS:\n%s", ext)
	}
	sendWithPython(t, g, []string{writeFile(t, "ca.pem", certPEM)})
}

// sendWithPython sends a message with a UTF-8 8-bit body and a binary
// attachment through the gateway and checks that the copy queued is the
// message sent, byte for byte, but for From, Bcc and Message-ID.
func sendWithPython(t *testing.T, g *gateway, extra []string) {
	t.Helper()
	blob := make([]byte, 64<<10)
	rand.Read(blob)
	for i := range 256 {
		blob[i] = byte(i)
	}
	rcpt := "bob@" + strings.ToUpper(testDomain)
	host, port, _ := net.SplitHostPort(g.addr)
	args := append([]string{"-c", sendScript, host, port, g.user, testPassword, rcpt,
		writeFile(t, "body.txt", []byte(testBody)), writeFile(t, "blob.bin", blob)}, extra...)
	cmd := exec.Command("python3", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	sent, err := cmd.Output()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, stderr.Bytes())
	}
	got := g.msgs.take()
	if len(got) != 1 || got[0].To != g.bob {
		t.Fatalf("queued %d copies, want one for bob", len(got))
	}
	checkKept(t, sent, got[0].Content)

	m, err := mail.ReadMessage(bytes.NewReader(got[0].Content))
	if err != nil {
		t.Fatal(err)
	}
	wantFrom := (&mail.Address{Name: testNickname, Address: g.user}).String()
	if f := m.Header["From"]; len(f) != 1 || f[0] != wantFrom {
		t.Errorf("From %q, want %q", f, wantFrom)
	}
	if id := m.Header.Get("Message-ID"); id != "<python-1@example.org>" {
		t.Errorf("Message-ID %q, want the client's", id)
	}
	if b := m.Header.Get("Bcc"); b != "" {
		t.Errorf("Bcc kept: %q", b)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	text, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(text); strings.ReplaceAll(string(b), "\r\n", "\n") != testBody {
		t.Errorf("body %q, want %q", b, testBody)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, att))
	if err != nil || att.FileName() != "blob.bin" || !bytes.Equal(b, blob) {
		t.Errorf("attachment %q of %d bytes differs from the %d bytes sent", att.FileName(), len(b), len(blob))
	}
}

// checkKept checks that queued is sent with only From, Bcc and Message-ID
// changed: the other header fields in order and the body byte for byte.
func checkKept(t *testing.T, sent, queued []byte) {
	t.Helper()
	if !bytes.HasSuffix(sent, []byte("\r\n")) {
		sent = append(sent, "\r\n"...) // SMTP ends the data with a line end
	}
	sh, sb := splitHeader(sent)
	qh, qb := splitHeader(queued)
	if !bytes.Equal(sb, qb) {
		t.Errorf("the body differs: sent %d bytes, queued %d", len(sb), len(qb))
	}
	keep := func(h []byte) []string {
		var out []string
		for f := range fields(h) {
			name, _, _ := bytes.Cut(f, []byte(":"))
			switch strings.ToLower(string(name)) {
			case "from", "bcc", "message-id":
				continue
			}
			out = append(out, string(f))
		}
		return out
	}
	if s, q := keep(sh), keep(qh); strings.Join(s, "") != strings.Join(q, "") {
		t.Errorf("the header differs:\nsent   %q\nqueued %q", s, q)
	}
}

func TestCurl(t *testing.T) {
	need(t, "curl")
	g := startGateway(t, nil)
	msg := []byte("To: bob@phpchat.lan\r\nSubject: from curl\r\nContent-Type: text/html; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\n<p>Grüße</p>\r\n.\r\n..dots\r\n")
	file := writeFile(t, "msg.eml", msg)
	curl := func(mech, pass string) (string, error) {
		out, err := exec.Command("curl", "-sS", "--max-time", "30", "smtp://"+g.addr,
			"--mail-from", "me@example.org", "--mail-rcpt", "bob@phpchat.lan",
			"--upload-file", file, "--user", g.user+":"+pass, "--login-options", "AUTH="+mech).CombinedOutput()
		return string(out), err
	}
	for _, mech := range []string{"LOGIN", "PLAIN"} {
		if out, err := curl(mech, testPassword); err != nil {
			t.Fatalf("curl AUTH=%s: %v\n%s", mech, err, out)
		}
		got := g.msgs.take()
		if len(got) != 1 {
			t.Fatalf("AUTH=%s: %d copies queued, want 1", mech, len(got))
		}
		checkKept(t, msg, got[0].Content)
		if m, err := mail.ReadMessage(bytes.NewReader(got[0].Content)); err != nil || m.Header.Get("Message-ID") == "" {
			t.Errorf("AUTH=%s: no Message-ID added (%v)", mech, err)
		}
	}
	out, err := curl("PLAIN", "guess")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 {
		t.Fatalf("curl with a wrong password: %v, want exit status 67 (login denied)\n%s", err, out)
	}
	g.sendOK(t)
}
