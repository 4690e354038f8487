// Command mail measures the mail gateways against the servers people run
// (issue 13's figures), on this machine, in one run:
//
//   - SMTP: messages per second accepted durably (the 250 after DATA) from
//     parallel sessions, each sending one message after another: our
//     gateway (a built phpchat-node, AUTH PLAIN) with a Go client, and
//     Postfix (delivering to a Maildir) with its smtp-source;
//   - IMAP: a full mbsync of an INBOX of -imap-messages messages into an
//     empty Maildir, twice (two fresh targets), timed, with the server's
//     peak RSS: our gateway (the inbox filled through the store of the
//     stopped node) and Dovecot (a Maildir with the same messages, indexed
//     beforehand as delivery would have).
//
// Postfix and Dovecot run as throwaway instances on 127.0.0.1 only, on
// free ports, with configurations, queues and mailboxes in the work
// directory; they are stopped at the end. It needs root (Postfix and
// Dovecot start as root and drop privileges) and the Debian packages
// postfix, dovecot-imapd and isync. Run it by hand from the module root:
//
//	go run ./bench/mail
//	go run ./bench/mail -smtp-messages 5000 -imap-messages 10000 -keep
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/store"
)

const password = "bench-password-not-secret"

var (
	smtpMessages = flag.Int("smtp-messages", 2000, "messages sent through each SMTP server")
	sessions     = flag.Int("sessions", 8, "parallel SMTP sessions")
	size         = flag.Int("size", 4096, "bytes of body of each SMTP message")
	imapMessages = flag.Int("imap-messages", 10000, "messages in the INBOX that mbsync syncs")
	fsync        = flag.Bool("fsync", true, "mbsync's FSync (its default); off shows the servers without the client's flushes")
	only         = flag.String("only", "smtp,imap", "workloads to run: smtp, imap or both")
	theirs       = flag.Bool("theirs", true, "measure Postfix and Dovecot too")
	keep         = flag.Bool("keep", false, "keep the work directory")
	workFlag     = flag.String("work", "", "work directory (default: a new one in $TMPDIR)")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	work := *workFlag
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "mailbench"); err != nil {
			log.Fatal(err)
		}
	}
	// Postfix and Dovecot drop privileges: they must reach their files.
	if err := os.MkdirAll(work, 0o755); err != nil {
		log.Fatal(err)
	}
	os.Chmod(work, 0o755)
	if !*keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Println("work directory:", work)
	}
	if err := run(work); err != nil {
		log.Printf("mail bench: %v", err)
		if !*keep {
			os.RemoveAll(work)
		}
		os.Exit(1)
	}
}

func run(work string) error {
	node := filepath.Join(work, "phpchat-node")
	build := exec.Command("go", "build", "-o", node, "github.com/phpchat/phpchat-node")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build phpchat-node: %w", err)
	}
	fmt.Printf("cores %d; %s\n\n", runtime.NumCPU(), *only)
	if strings.Contains(*only, "smtp") {
		if err := benchSMTP(work, node); err != nil {
			return err
		}
	}
	if strings.Contains(*only, "imap") {
		if err := benchIMAP(work, node); err != nil {
			return err
		}
	}
	return nil
}

// ---- SMTP ----

func benchSMTP(work, node string) error {
	fmt.Printf("SMTP: %d messages of %d bytes of body, %d parallel sessions, one message after another in each\n",
		*smtpMessages, *size, *sessions)
	ours, err := smtpOurs(work, node)
	if err != nil {
		return fmt.Errorf("smtp, phpchat-node: %w", err)
	}
	fmt.Printf("  phpchat-node  %7.0f msg/s  (%d in %s)\n", rate(*smtpMessages, ours), *smtpMessages, ours.Round(time.Millisecond))
	if !*theirs {
		return nil
	}
	pf, err := smtpPostfix(work)
	if err != nil {
		return fmt.Errorf("smtp, postfix: %w", err)
	}
	fmt.Printf("  postfix       %7.0f msg/s  (%d in %s)\n", rate(*smtpMessages, pf), *smtpMessages, pf.Round(time.Millisecond))
	fmt.Printf("  ratio ours/theirs (throughput)  %.2f\n\n", rate(*smtpMessages, ours)/rate(*smtpMessages, pf))
	return nil
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// smtpOurs sends the messages through a node's SMTP gateway, then checks,
// with the node stopped, that its outbox holds every one.
func smtpOurs(work, node string) (time.Duration, error) {
	dir := filepath.Join(work, "smtp-node")
	n, err := startNode(node, dir, "--smtp", "--smtp-listen", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer n.stop()
	info, err := n.waitInfo("smtp")
	if err != nil {
		return 0, err
	}
	peer, err := identity.Generate()
	if err != nil {
		return 0, err
	}
	user := info["mail_user"].(string)
	to := peer.Address.String() + "@phpchat.lan"
	body := bodyOf(*size)
	took, err := sendAll(info["smtp"].(string), user, user, to, body)
	if err != nil {
		return 0, err
	}
	if err := n.stop(); err != nil {
		return 0, err
	}
	db, err := store.Open(filepath.Join(dir, "store"), slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	counts, err := db.Outbox().Counts()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	if total != *smtpMessages {
		return 0, fmt.Errorf("the outbox holds %d messages, not %d", total, *smtpMessages)
	}
	return took, nil
}

// sendAll sends the messages over parallel sessions with AUTH PLAIN, each
// session one message after another as smtp-source -d does, and returns
// the time from the first connection to the last 250.
func sendAll(addr, user, from, to string, body []byte) (time.Duration, error) {
	var (
		wg   sync.WaitGroup
		next = make(chan int, *smtpMessages)
		errs = make(chan error, *sessions)
	)
	for i := range *smtpMessages {
		next <- i
	}
	close(next)
	start := time.Now()
	for range *sessions {
		wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Hello("bench.local"); err != nil {
				errs <- err
				return
			}
			if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
				errs <- err
				return
			}
			for i := range next {
				msg := fmt.Appendf(nil, "From: <%s>\r\nTo: <%s>\r\nSubject: bench %d\r\nMessage-ID: <%d.%d@bench.local>\r\n\r\n%s",
					from, to, i, i, start.UnixNano(), body)
				if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
			c.Quit()
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	return took, errors.Join(collect(errs)...)
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// bodyOf returns size bytes of text in lines of 72 characters and CRLF.
func bodyOf(size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		line := strings.Repeat(string(rune('a'+b.Len()%26)), 72)
		b.WriteString(line + "\r\n")
	}
	return append(b.Bytes()[:size-2], "\r\n"...)
}

// smtpPostfix runs smtp-source against a throwaway Postfix that delivers
// to a Maildir, and waits for every message to be delivered.
func smtpPostfix(work string) (time.Duration, error) {
	pf, err := startPostfix(filepath.Join(work, "postfix"))
	if err != nil {
		return 0, err
	}
	defer pf.stop()
	start := time.Now()
	cmd := exec.Command("smtp-source", "-d", "-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*smtpMessages),
		"-l", strconv.Itoa(*size), "-f", "bench@bench.local", "-t", "bench@bench.local", pf.addr)
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("smtp-source: %w: %s", err, out)
	}
	// Every message accepted is delivered to the Maildir: count them.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := countFiles(filepath.Join(pf.dir, "vmail", "bench", "new"), filepath.Join(pf.dir, "vmail", "bench", "cur"))
		if n == *smtpMessages {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("postfix delivered %d of %d messages (see %s)", n, *smtpMessages, filepath.Join(pf.dir, "maillog"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return took, nil
}

type postfix struct{ dir, conf, addr string }

// startPostfix configures a Postfix instance in dir, listening on a free
// port of 127.0.0.1 only, accepting mail for bench.local into the Maildir
// dir/vmail/bench/ (the virtual delivery agent, as the user nobody), and
// starts it.
func startPostfix(dir string) (*postfix, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "etc")
	for _, d := range []string{conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data"), filepath.Join(dir, "vmail")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).Run(); err != nil {
		return nil, fmt.Errorf("chown data: %w", err)
	}
	if err := exec.Command("chown", "nobody:nogroup", filepath.Join(dir, "vmail")).Run(); err != nil {
		return nil, fmt.Errorf("chown vmail: %w", err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.local
mydomain = bench.local
myorigin = bench.local
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = bench.local
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = static:bench/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
smtpd_banner = $myhostname ESMTP
biff = no
`, dir)
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, err
	}
	// Debian's master.cf, without chroot, with smtpd on the free port.
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for line := range strings.Lines(string(master)) {
		f := strings.Fields(line)
		if len(f) >= 8 && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = fmt.Sprintf("127.0.0.1:%d", port)
			}
			f[4] = "n" // chroot
			line = strings.Join(f, " ") + "\n"
		}
		out.WriteString(line)
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), out.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if b, err := exec.Command("postfix", "-c", conf, "set-permissions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix set-permissions: %w: %s", err, b)
	}
	if b, err := exec.Command("postfix", "-c", conf, "start").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix start: %w: %s", err, b)
	}
	pf := &postfix{dir: dir, conf: conf, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if err := waitListen(pf.addr); err != nil {
		pf.stop()
		return nil, fmt.Errorf("postfix: %w (see %s/maillog)", err, dir)
	}
	return pf, nil
}

// stop stops the Postfix and waits until its master has exited.
func (p *postfix) stop() {
	exec.Command("postfix", "-c", p.conf, "stop").Run()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if exec.Command("postfix", "-c", p.conf, "status").Run() != nil {
			return
		}
	}
	log.Printf("postfix -c %s did not stop within a minute", p.conf)
}

// ---- IMAP ----

type imapResult struct {
	runs     []time.Duration
	peakRSS  int64 // kB
	restRSS  int64 // kB, before the first sync
	messages int
}

func benchIMAP(work, node string) error {
	fmt.Printf("IMAP: mbsync (isync, FSync %v) of a %d-message INBOX into an empty Maildir, twice\n", *fsync, *imapMessages)
	msgs := corpus(*imapMessages)
	var bytes int
	for _, m := range msgs {
		bytes += len(m)
	}
	fmt.Printf("  messages: %d, %.1f MiB\n", len(msgs), float64(bytes)/(1<<20))
	ours, err := imapOurs(work, node, msgs)
	if err != nil {
		return fmt.Errorf("imap, phpchat-node: %w", err)
	}
	printIMAP("phpchat-node", ours, "VmHWM of the node")
	if !*theirs {
		return nil
	}
	dc, err := imapDovecot(work, msgs)
	if err != nil {
		return fmt.Errorf("imap, dovecot: %w", err)
	}
	printIMAP("dovecot", dc, "sum of its processes' RSS, sampled")
	fmt.Printf("  ratio ours/theirs (time)  first %.2f  second %.2f;  peak RSS %.2f\n",
		ours.runs[0].Seconds()/dc.runs[0].Seconds(), ours.runs[1].Seconds()/dc.runs[1].Seconds(),
		float64(ours.peakRSS)/float64(dc.peakRSS))
	return nil
}

func printIMAP(name string, r imapResult, rss string) {
	fmt.Printf("  %-12s  first %s  second %s  peak RSS %.1f MiB (%s; %.1f MiB before the syncs)\n",
		name, r.runs[0].Round(time.Millisecond), r.runs[1].Round(time.Millisecond),
		float64(r.peakRSS)/1024, rss, float64(r.restRSS)/1024)
}

// corpus returns n messages (CRLF) of 1 to 8 KiB of text, 4.5 KiB on
// average, the same on every run.
func corpus(n int) [][]byte {
	rng := rand.New(rand.NewPCG(13, 13))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while peers relay offline mail " +
		"sealed envelopes carry stamps of hashcash to nodes near the recipient")
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range n {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: Sender %d <pc1sender%d@phpchat.lan>\r\nTo: <bench@phpchat.lan>\r\n", i%50, i%50)
		fmt.Fprintf(&b, "Subject: bench message %d\r\nDate: %s\r\nMessage-ID: <%d.bench@phpchat.lan>\r\n",
			i, date.Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z), i)
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		want := b.Len() + 1024 + rng.IntN(7*1024)
		line := 0
		for b.Len() < want {
			w := words[rng.IntN(len(words))]
			if line+len(w) > 72 {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteString(w + " ")
			line += len(w) + 1
		}
		b.WriteString("\r\n")
		out[i] = b.Bytes()
	}
	return out
}

// imapOurs makes a node, fills its inbox through its store while it is
// stopped, starts it with the IMAP gateway and syncs.
func imapOurs(work, node string, msgs [][]byte) (imapResult, error) {
	dir := filepath.Join(work, "imap-node")
	n, err := startNode(node, dir) // the first run makes its key and store
	if err != nil {
		return imapResult{}, err
	}
	if err := n.stop(); err != nil {
		return imapResult{}, err
	}
	if err := fillInbox(filepath.Join(dir, "store"), msgs); err != nil {
		return imapResult{}, err
	}
	n, err = startNode(node, dir, "--imap", "--imap-listen", "127.0.0.1:0")
	if err != nil {
		return imapResult{}, err
	}
	defer n.stop()
	info, err := n.waitInfo("imap")
	if err != nil {
		return imapResult{}, err
	}
	var r imapResult
	r.restRSS = procStatus(n.cmd.Process.Pid, "VmRSS")
	for i := range 2 {
		took, err := mbsync(filepath.Join(work, fmt.Sprintf("ours-sync%d", i)), info["imap"].(string), info["mail_user"].(string), len(msgs))
		if err != nil {
			return imapResult{}, err
		}
		r.runs = append(r.runs, took)
	}
	r.peakRSS = procStatus(n.cmd.Process.Pid, "VmHWM")
	return r, nil
}

// fillInbox adds msgs to the inbox of the store in dir, from 16 writers.
func fillInbox(dir string, msgs [][]byte) error {
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	next := make(chan int, len(msgs))
	for i := range msgs {
		next <- i
	}
	close(next)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				var id [16]byte
				copy(id[:], fmt.Sprintf("bench-%010d", i))
				_, err := db.Inbox().Add(store.InMsg{ID: id, From: fmt.Sprintf("pc1sender%d", i%50),
					Subject: fmt.Sprintf("bench message %d", i), Content: msgs[i]})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return err
	}
	fmt.Printf("  (filled our inbox through the store in %s)\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// mbsync syncs the INBOX of the server at addr into a new Maildir in dir
// with mbsync's default settings (FSync as -fsync says), checks that it
// got want messages, and returns how long it took.
func mbsync(dir, addr, user string, want int) (time.Duration, error) {
	host, port, _ := net.SplitHostPort(addr)
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o700); err != nil {
		return 0, err
	}
	fs := "yes"
	if !*fsync {
		fs = "no"
	}
	conf := fmt.Sprintf(`FSync %s

IMAPAccount bench
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore far
Account bench

MaildirStore near
Path %[6]s/mail/
Inbox %[6]s/mail/INBOX

Channel bench
Far :far:
Near :near:
Patterns INBOX
Create Near
SyncState *
`, fs, host, port, user, password, dir)
	cf := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return 0, err
	}
	start := time.Now()
	out, err := exec.Command("mbsync", "-q", "-c", cf, "bench").CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("mbsync: %w: %s", err, out)
	}
	inbox := filepath.Join(dir, "mail", "INBOX")
	if got := countFiles(filepath.Join(inbox, "new"), filepath.Join(inbox, "cur")); got != want {
		return 0, fmt.Errorf("mbsync synced %d messages, not %d", got, want)
	}
	return took, nil
}

// imapDovecot puts msgs in the Maildir of a throwaway Dovecot and syncs.
func imapDovecot(work string, msgs [][]byte) (imapResult, error) {
	dc, err := startDovecot(filepath.Join(work, "dovecot"), msgs)
	if err != nil {
		return imapResult{}, err
	}
	defer dc.stop()
	var r imapResult
	r.restRSS = treeRSS(dc.cmd.Process.Pid)
	for i := range 2 {
		stop := make(chan struct{})
		peak := make(chan int64)
		go func() { // sample the RSS of Dovecot's processes during the sync
			var max int64
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				max = maxInt(max, treeRSS(dc.cmd.Process.Pid))
				select {
				case <-stop:
					peak <- max
					return
				case <-t.C:
				}
			}
		}()
		took, err := mbsync(filepath.Join(work, fmt.Sprintf("dovecot-sync%d", i)), dc.addr, "bench", len(msgs))
		close(stop)
		r.peakRSS = maxInt(r.peakRSS, <-peak)
		if err != nil {
			return imapResult{}, err
		}
		r.runs = append(r.runs, took)
	}
	return r, nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

type dovecot struct {
	addr string
	cmd  *exec.Cmd
}

// startDovecot configures a Dovecot in dir serving IMAP on a free port of
// 127.0.0.1 only to one passwd-file user, bench, whose Maildir gets msgs
// (as new mail, LF line ends as a Maildir keeps them), starts it in the
// foreground and has doveadm index the INBOX, as delivery would have.
func startDovecot(dir string, msgs [][]byte) (*dovecot, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "home", "bench")
	md := filepath.Join(home, "Maildir")
	for _, d := range []string{filepath.Join(dir, "run"), filepath.Join(md, "new"), filepath.Join(md, "cur"), filepath.Join(md, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for i, m := range msgs {
		name := fmt.Sprintf("%d.M%dP1.bench", 1735689600+i*60, i)
		if err := os.WriteFile(filepath.Join(md, "new", name), bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), 0o600); err != nil {
			return nil, err
		}
	}
	if b, err := exec.Command("chown", "-R", "nobody:nogroup", filepath.Join(dir, "home")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown: %w: %s", err, b)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("bench:{PLAIN}"+password+"::::::\n"), 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, port)
	cf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("dovecot", "-F", "-c", cf)
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	dc := &dovecot{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	if err := waitListen(dc.addr); err != nil {
		dc.stop()
		return nil, fmt.Errorf("dovecot: %w (see %s)", err, dir)
	}
	start := time.Now()
	if b, err := exec.Command("doveadm", "-c", cf, "index", "-u", "bench", "INBOX").CombinedOutput(); err != nil {
		dc.stop()
		return nil, fmt.Errorf("doveadm index: %w: %s", err, b)
	}
	fmt.Printf("  (Dovecot's Maildir written and indexed in %s)\n", time.Since(start).Round(time.Millisecond))
	return dc, nil
}

func (d *dovecot) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

// ---- the node ----

type nodeProc struct {
	bin, dir string
	cmd      *exec.Cmd
	done     chan error
	err      error
}

// startNode runs the node of dir on loopback (no bootstrap, low stamps)
// with the mail password set, and waits until it is ready.
func startNode(bin, dir string, args ...string) (*nodeProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"--data-dir", dir, "run", "--listen", "127.0.0.1:0", "--msg-bits", "8"}, args...)...)
	cmd.Env = append(os.Environ(), "PHPCHAT_MAIL_PASSWORD="+password)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nodeProc{bin: bin, dir: dir, cmd: cmd, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait(); logf.Close() }()
	if out, err := exec.Command(bin, "--data-dir", dir, "wait", "--timeout", "60s").CombinedOutput(); err != nil {
		n.stop()
		return nil, fmt.Errorf("node not ready: %w: %s (see %s)", err, out, logf.Name())
	}
	return n, nil
}

// waitInfo waits until info --json gives a bound listen address for key.
func (n *nodeProc) waitInfo(key string) (map[string]any, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command(n.bin, "--data-dir", n.dir, "info", "--json").Output()
		var info map[string]any
		if err == nil && json.Unmarshal(out, &info) == nil {
			if v, _ := info[key].(string); v != "" && !strings.HasSuffix(v, ":0") {
				return info, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("node's %s gateway does not listen: %s", key, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the node with SIGTERM and waits for it to exit.
func (n *nodeProc) stop() error {
	if n.cmd == nil {
		return n.err
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.err = err
	case <-time.After(time.Minute):
		n.cmd.Process.Kill()
		n.err = fmt.Errorf("node did not stop within a minute")
	}
	n.cmd = nil
	return n.err
}

// ---- helpers ----

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListen waits until addr accepts connections.
func waitListen(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s does not listen", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countFiles(dirs ...string) int {
	n := 0
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		n += len(ents)
	}
	return n
}

// procStatus returns a kB field of /proc/pid/status, 0 if there is none.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	return statusField(f, field)
}

func statusField(r io.Reader, field string) int64 {
	s := bufio.NewScanner(r)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && k == field {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// treeRSS returns the sum of VmRSS of pid and its descendants, in kB.
func treeRSS(pid int) int64 {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		rest := b[bytes.LastIndexByte(b, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var sum int64
	stack := []int{pid}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		sum += procStatus(p, "VmRSS")
		stack = append(stack, children[p]...)
	}
	return sum
}
