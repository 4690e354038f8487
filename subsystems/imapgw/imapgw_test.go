package imapgw

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

const (
	testUser = "pc1test@phpchat.lan"
	testPass = "correct horse battery"
)

// gw is a gateway under test, with its store and router.
type gw struct {
	t    *testing.T
	db   *store.DB
	r    *router.Router
	srv  *Server
	stop func()
}

func newGW(t *testing.T) *gw {
	t.Helper()
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g := &gw{t: t, db: db, r: router.New()}
	g.start()
	t.Cleanup(func() { g.stop() })
	return g
}

// start runs a new Server on a free loopback port.
func (g *gw) start() {
	g.t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g.srv = New(Config{
		Router: g.r, Logger: log, DB: g.db, Listen: "127.0.0.1:0",
		Auth:     &mailauth.Checker{Credentials: mailauth.Credentials{User: testUser, Password: testPass}},
		MaxConns: 8, MaxMessageSize: 1 << 20,
	})
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- g.srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		g.t.Fatalf("Run: %v", err)
	}
	g.stop = func() {
		cancel()
		if err := <-done; err != nil {
			g.t.Errorf("Run: %v", err)
		}
		g.stop = func() {}
	}
}

func (g *gw) restart() {
	g.stop()
	g.start()
}

func (g *gw) port() string { return strconv.Itoa(g.srv.Addr().Port) }

// deliver puts a message in the inbox as the messages service does, and
// publishes its event.
func (g *gw) deliver(content string) [16]byte {
	g.t.Helper()
	var id [16]byte
	rand.Read(id[:])
	if _, err := g.db.Inbox().Add(store.InMsg{ID: id, From: "pc1sender", Subject: "s", Content: []byte(content)}); err != nil {
		g.t.Fatal(err)
	}
	g.r.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindMail, ID: fmt.Sprintf("%x", id)})
	return id
}

// python runs a Python script with M, an imaplib connection logged in,
// unless it says "# nologin"; it fails the test if the script does.
func (g *gw) python(script string) string {
	g.t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		g.t.Skip("python3 not installed")
	}
	prelude := "import imaplib, sys, socket\nM = imaplib.IMAP4('127.0.0.1', " + g.port() + ")\n"
	if !strings.Contains(script, "# nologin") {
		prelude += "M.login('" + testUser + "', '" + testPass + "')\n"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", prelude+script).CombinedOutput()
	if err != nil {
		g.t.Fatalf("python: %v\n%s", err, out)
	}
	return string(out)
}

const testMessage = "From: Alice <pc1alice@phpchat.lan>\r\nTo: pc1test@phpchat.lan\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Message-ID: <m1@phpchat.lan>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo Welt \xc3\xa4\xc3\xb6\xc3\xbc\r\n" +
	"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b--\r\n"

func TestPythonReadsInbox(t *testing.T) {
	g := newGW(t)
	id := g.deliver(testMessage)

	start := time.Now()
	g.python(`# nologin
try:
    M.login('` + testUser + `', 'wrong')
    sys.exit('wrong password accepted')
except imaplib.IMAP4.error as e:
    assert 'AUTHENTICATIONFAILED' in str(e), e
`)
	if d := time.Since(start); d < mailauth.FirstDelay {
		t.Errorf("a wrong password answered in %v, not slowed down", d)
	}

	out := g.python(`
typ, boxes = M.list()
print(b'\n'.join(boxes).decode())
typ, n = M.select('INBOX')
assert n == [b'1'], n
typ, d = M.fetch('1', '(FLAGS BODY.PEEK[] BODYSTRUCTURE ENVELOPE BODY.PEEK[1] BODY.PEEK[]<0.4>)')
print(d)
body = [x for x in d if isinstance(x, tuple) and b'BODY[] ' in x[0]][0][1]
sys.stdout.buffer.write(b'BODY=' + body.hex().encode() + b'\n')
assert b'\\Seen' not in d[0][0], d
typ, d = M.store('1', '+FLAGS', '\\Seen')
assert typ == 'OK', d
`)
	for _, want := range []string{`"/" INBOX`, `(\Sent) "/" "Sent"`, `\Trash`, `\Junk`, `\Drafts`, "BODYSTRUCTURE", "Hallo Welt", "(NIL \"=?utf-8?q?Gr=C3=BC=C3=9Fe?=\" ((\"Alice\" NIL \"pc1alice\"", "BODY[]<0> {4}"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "BODY="+fmt.Sprintf("%x", testMessage)+"\n") {
		t.Errorf("the body is not the message byte for byte:\n%s", out)
	}
	m, err := g.db.Inbox().Get(id)
	if err != nil || !m.Read {
		t.Fatalf("\\Seen over IMAP: inbox read %v, %v; want read", m.Read, err)
	}

	// The other way round: unread in the inbox is unseen over IMAP.
	if err := g.db.Inbox().SetRead(id, false); err != nil {
		t.Fatal(err)
	}
	g.python(`
M.select('INBOX')
typ, d = M.fetch('1', '(FLAGS)')
assert b'\\Seen' not in d[0], d
typ, d = M.fetch('1', '(BODY[HEADER.FIELDS (SUBJECT)])')
typ, d = M.fetch('1', '(FLAGS)')
assert b'\\Seen' in d[0], d
`)
	if m, _ := g.db.Inbox().Get(id); !m.Read {
		t.Errorf("FETCH BODY[] did not mark the message read")
	}

	// EXAMINE is read-only: no \Seen, no STORE, no EXPUNGE.
	g.db.Inbox().SetRead(id, false)
	g.python(`
M.select('INBOX', readonly=True)
M.fetch('1', '(BODY[])')
typ, d = M.store('1', '+FLAGS', '\\Deleted')
assert typ == 'NO', (typ, d)
typ, d = M.expunge()
assert typ == 'NO', (typ, d)
`)
	if m, _ := g.db.Inbox().Get(id); m.Read {
		t.Errorf("FETCH in EXAMINE marked the message read")
	}

	// A message deleted elsewhere disappears; EXPUNGE deletes from the inbox.
	id2 := g.deliver("Subject: two\r\n\r\nsecond\r\n")
	g.db.Inbox().Delete(id)
	g.python(`
typ, n = M.select('INBOX')
assert n == [b'1'], n
M.store('1', '+FLAGS', '\\Deleted')
typ, d = M.expunge()
assert d == [b'1'], d
`)
	if _, err := g.db.Inbox().Get(id2); err == nil {
		t.Errorf("EXPUNGE left the message in the inbox")
	}
}

func TestAppendAndRestart(t *testing.T) {
	g := newGW(t)
	g.deliver("Subject: one\r\n\r\none\r\n")
	// A message this node sent, and a receipt that is not the user's.
	var sid, rid [16]byte
	rand.Read(sid[:])
	rand.Read(rid[:])
	sent := "Message-ID: <sent1@phpchat.lan>\r\nSubject: out\r\n\r\nhello\r\n"
	g.db.Outbox().Add(store.OutMsg{ID: sid, To: "pc1bob", Content: []byte(sent), State: store.OutDelivered})
	g.db.Outbox().Add(store.OutMsg{ID: rid, To: "pc1bob", Content: []byte("receipt"), Receipt: true})
	g.r.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindState})

	script := `
typ, d = M.create('Projects/2024')
assert typ == 'OK', d
typ, d = M.append('Projects/2024', '(\\Flagged)', None, b'Subject: kept\r\n\r\nkept\r\n')
assert typ == 'OK', d
print(d)
typ, d = M.append('Sent', '(\\Seen)', None, b'` + strings.ReplaceAll(sent, "\r\n", `\r\n`) + `')
assert typ == 'OK', d
typ, n = M.select('Sent')
assert n == [b'1'], n
typ, d = M.fetch('1', '(FLAGS)')
assert b'$Delivered' in d[0], d
for box in ('INBOX', 'Sent', 'Projects/2024'):
    typ, d = M.status(box, '(MESSAGES UIDNEXT UIDVALIDITY)')
    print('STATUS', d[0].decode())
M.select('Projects/2024')
typ, d = M.uid('FETCH', '1:*', '(FLAGS)')
print('UIDS', d)
`
	before := g.python(script)
	if !strings.Contains(before, "APPENDUID") {
		t.Errorf("no APPENDUID:\n%s", before)
	}
	g.restart()
	after := g.python(`
for box in ('INBOX', 'Sent', 'Projects/2024'):
    typ, d = M.status(box, '(MESSAGES UIDNEXT UIDVALIDITY)')
    print('STATUS', d[0].decode())
M.select('Projects/2024')
typ, d = M.uid('FETCH', '1:*', '(FLAGS)')
print('UIDS', d)
`)
	pick := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "STATUS") || strings.HasPrefix(l, "UIDS") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if pick(before) != pick(after) {
		t.Errorf("state changed across a restart:\n%s\nafter:\n%s", pick(before), pick(after))
	}
	if !strings.Contains(after, `"Sent" (MESSAGES 1 `) || !strings.Contains(after, `"Projects/2024" (MESSAGES 1 `) || !strings.Contains(after, `\\Flagged`) {
		t.Errorf("unexpected mailboxes:\n%s", after)
	}
}

func TestIdleSeesNewMessage(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	g := newGW(t)
	g.deliver("Subject: one\r\n\r\none\r\n")
	script := `import imaplib, sys, time
M = imaplib.IMAP4('127.0.0.1', ` + g.port() + `)
M.login('` + testUser + `', '` + testPass + `')
M.select('INBOX')
M.send(b'i1 IDLE\r\n')
assert M.readline().startswith(b'+'), 'no continuation'
print('IDLING', flush=True)
sys.stdin.readline()
t0 = time.monotonic()
M.sock.settimeout(1.0)
line = M.readline()
print('GOT', line, time.monotonic() - t0, flush=True)
M.send(b'DONE\r\n')
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "IDLING") {
		t.Fatalf("client: %q, %v", l, err)
	}
	g.deliver("Subject: two\r\n\r\ntwo\r\n")
	io.WriteString(stdin, "go\n")
	l, _ := r.ReadString('\n')
	if !strings.Contains(l, "* 2 EXISTS") {
		t.Errorf("an idling client did not see the new message within a second: %q", l)
	}
	cmd.Wait()
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	g := newGW(t)
	g.deliver("Subject: via curl\r\n\r\nbody for curl\r\n")
	curl := func(url string) string {
		out, err := exec.Command("curl", "-sS", "--max-time", "20", "--user", testUser+":"+testPass, url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		return string(out)
	}
	base := "imap://127.0.0.1:" + g.port() + "/"
	if out := curl(base); !strings.Contains(out, "INBOX") || !strings.Contains(out, "Sent") {
		t.Errorf("curl list:\n%s", out)
	}
	if out := curl(base + "INBOX;UID=1"); out != "Subject: via curl\r\n\r\nbody for curl\r\n" {
		t.Errorf("curl fetch: %q", out)
	}
}

func TestMalformedCommands(t *testing.T) {
	g := newGW(t)
	c, err := net.Dial("tcp", g.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	send := func(cmd, tag string) string {
		fmt.Fprintf(c, "%s\r\n", cmd)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				return l
			}
		}
	}
	if l := send("a1 LOGIN "+testUser+` "`+testPass+`"`, "a1"); !strings.HasPrefix(l, "a1 OK") {
		t.Fatalf("login: %s", l)
	}
	for _, cmd := range []string{"a2 FROB x", "a3 FETCH", "a4 SELECT", "a5 FETCH 1:* (FLAGS", "a7 STORE 1 +FLAGS (\\Seen)"} {
		tag := strings.Fields(cmd)[0]
		if l := send(cmd, tag); !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("%s: %s; want BAD", cmd, l)
		}
	}
	if l := send("a8 NOOP", "a8"); !strings.HasPrefix(l, "a8 OK") {
		t.Errorf("after bad commands: %s", l)
	}
	// A client that stops mid-APPEND leaves nothing.
	fmt.Fprintf(c, "a9 APPEND Drafts {100}\r\n")
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+") {
		t.Fatalf("append: %s", l)
	}
	io.WriteString(c, "Subject: half\r\n")
	c.Close()
	// Too large an APPEND is refused before it is sent.
	g.python(`
typ, d = M.append('Drafts', None, None, b'x' * (2 << 20))
assert typ == 'NO' and b'TOOBIG' in d[0], (typ, d)
typ, d = M.status('Drafts', '(MESSAGES)')
assert b'MESSAGES 0' in d[0], d
`)
}

func TestMbsync(t *testing.T) {
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Skip("mbsync not installed (Debian package isync)")
	}
	g := newGW(t)
	for i := range 20 {
		g.deliver(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n", i, i, i))
	}
	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail") + "/"
	conf := filepath.Join(dir, "mbsyncrc")
	os.MkdirAll(maildir, 0o700)
	writeConf := func() {
		os.WriteFile(conf, []byte(`IMAPAccount gw
Host 127.0.0.1
Port `+g.port()+`
User `+testUser+`
Pass "`+testPass+`"
SSLType None
AuthMechs LOGIN

IMAPStore gw-remote
Account gw

MaildirStore local
Path `+maildir+`
Inbox `+maildir+`INBOX
SubFolders Verbatim

Channel gw
Far :gw-remote:
Near :local:
Patterns INBOX Sent
Create Near
SyncState *
Sync Pull
`), 0o600)
	}
	run := func() {
		t.Helper()
		writeConf()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "mbsync", "-c", conf, "-a").CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	count := func() int {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			es, _ := os.ReadDir(filepath.Join(maildir, "INBOX", sub))
			n += len(es)
		}
		return n
	}
	run()
	run()
	if n := count(); n != 20 {
		t.Fatalf("after two syncs: %d messages, want 20", n)
	}
	g.restart()
	g.deliver("Subject: late\r\n\r\nlate\r\n")
	run()
	if n := count(); n != 21 {
		t.Fatalf("after a restart and a new message: %d messages, want 21", n)
	}
}
