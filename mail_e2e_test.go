package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/mailauth"
)

// mailScript sends a message with a UTF-8 body and a binary attachment
// through A's SMTP gateway with Python's smtplib, waits for it in B's
// INBOX with imaplib, checks body and attachment byte for byte, then
// waits for A's Sent to show it $Delivered.
const mailScript = `
import email, imaplib, os, smtplib, sys, time
from email.message import EmailMessage
smtp_addr, a_imap, b_imap, a_user, b_user, password = sys.argv[1:7]
def hp(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)
body = "Grüße aus dem Netz: ünïcødé ✓\n" * 3
blob = bytes((i * 7 + 3) % 256 for i in range(5000))
m = EmailMessage()
m["From"] = a_user
m["To"] = b_user
m["Subject"] = "Mit Anhang"
m.set_content(body)
m.add_attachment(blob, maintype="application", subtype="octet-stream", filename="blob.bin")
with smtplib.SMTP(*hp(smtp_addr), timeout=30) as s:
    s.login(a_user, password)
    s.send_message(m)
def wait_for(user, addr, box, test):
    deadline = time.time() + 60
    while time.time() < deadline:
        c = imaplib.IMAP4(*hp(addr))
        c.login(user, password)
        c.select(box)
        typ, data = c.search(None, "ALL")
        ids = data[0].split()
        if ids:
            got = test(c, ids[-1])
            if got:
                c.logout()
                return got
        c.logout()
        time.sleep(0.2)
    sys.exit("timed out waiting in " + box)
def fetch(c, i):
    typ, data = c.fetch(i, "(RFC822)")
    return data[0][1]
raw = wait_for(b_user, b_imap, "INBOX", fetch)
got = email.message_from_bytes(raw, policy=email.policy.default)
parts = list(got.iter_attachments())
text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")  # CRLF on the wire
assert text == body, "body differs: %r" % (text[:200],)
assert len(parts) == 1 and parts[0].get_content() == blob, "attachment differs"
assert got["Subject"] == "Mit Anhang"
assert a_user.split("@")[0] in got["From"], got["From"]
def delivered(c, i):
    typ, data = c.fetch(i, "(FLAGS)")
    return b"$Delivered" in data[0]
wait_for(a_user, a_imap, "Sent", delivered)
print("OK")
`

// A message sent with a real mail client through node A's SMTP gateway
// arrives in node B's INBOX, read with a real client, byte for byte; A's
// Sent shows it delivered.
func TestMailGatewaysEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a mail client")
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 (smtplib, imaplib)")
	}
	t.Setenv(mailauth.EnvPassword, "correct-horse-battery")
	mail := []string{"--listen", "127.0.0.1:0", "--msg-bits", "8",
		"--smtp", "--smtp-listen", "127.0.0.1:0", "--imap", "--imap-listen", "127.0.0.1:0"}
	a := startInProcess(t, filepath.Join(t.TempDir(), "a"), mail...)
	aInfo := a.info()
	b := startInProcess(t, filepath.Join(t.TempDir(), "b"), append(mail, "--connect", aInfo["address"].(string)+"@"+listenAddr(t, a))...)
	a.waitInfo("a sees b", func(in map[string]any) bool { return peers(in) == 1 })
	// The gateways are optional subsystems: the node is ready before
	// they are. info gives their bound addresses once they listen.
	bound := func(in map[string]any) bool {
		for _, k := range []string{"smtp", "imap"} {
			if v, _ := in[k].(string); v == "" || strings.HasSuffix(v, ":0") {
				return false
			}
		}
		return true
	}
	aInfo, bInfo := a.waitInfo("a's gateways listen", bound), b.waitInfo("b's gateways listen", bound)
	cmd := exec.Command(python, "-c", mailScript, aInfo["smtp"].(string), aInfo["imap"].(string), bInfo["imap"].(string),
		aInfo["mail_user"].(string), bInfo["mail_user"].(string), "correct-horse-battery")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("mail client: %v\n%s", err, out)
	}
	// phpchat-node messages agrees: B has it in its inbox.
	if out, _, _ := b.cli("messages"); !strings.Contains(out, "Mit Anhang") || !strings.Contains(out, "inbox") {
		t.Fatalf("B's messages:\n%s", out)
	}
}

// A mail gateway or the web console off loopback without TLS is refused
// before anything is created: passwords and tokens never cross a network
// in clear.
func TestFrontDoorsOffLoopbackNeedTLS(t *testing.T) {
	for _, args := range [][]string{
		{"--smtp", "--smtp-listen", "0.0.0.0:0"},
		{"--imap", "--imap-listen", "0.0.0.0:0"},
		{"--web", "--web-listen", "0.0.0.0:0"},
	} {
		dir := filepath.Join(t.TempDir(), "node")
		_, errOut, code := runCLI(t, append([]string{"--data-dir", dir, "run", "--listen", "127.0.0.1:0"}, args...)...)
		if code != 2 || !strings.Contains(errOut, args[1][2:]) || !strings.Contains(errOut, "needs TLS") {
			t.Errorf("run %v: exit %d, %q; want 2 naming %s and TLS", args, code, errOut, args[1])
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("run %v made the data dir", args)
		}
	}
}

// mail setup prints what a mail client needs, from the data dir alone.
func TestMailSetup(t *testing.T) {
	dir := t.TempDir()
	id, _, err := identity.LoadOrCreate(filepath.Join(dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(mailauth.EnvPassword, "s3cret-word")
	out, errOut, code := runCLI(t, "--data-dir", dir, "mail", "setup")
	for _, want := range []string{id.Address.String() + "@phpchat.lan", "21143", "21025", "s3cret-word", "--imap"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("mail setup: exit %d, lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	if _, _, code := runCLI(t, "--data-dir", t.TempDir(), "mail", "setup"); code != 1 {
		t.Fatalf("mail setup without a node: exit %d, want 1", code)
	}
}
