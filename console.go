package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:  "console",
		Usage: "attach to the running node for live talk (several consoles may attach)",
		Description: "Type /help at the prompt for the commands. Lines that are not commands go to\n" +
			"the current talk. Nothing typed is written to disk.",
		Action: runConsole,
	}
}

// consoleHelp is what /help prints: the commands and what they do.
var consoleHelp = [][2]string{
	{"/help", "print this list"},
	{"/connect HOST:PORT", "connect to a node and ask it to talk"},
	{"/connect ADDRESS@HOST:PORT", "the same, checking the node's address"},
	{"/talk NICK|ADDRESS", "ask a connected node to talk"},
	{"/request", "list the talk requests waiting for you"},
	{"/request accept N", "accept talk request N"},
	{"/request decline N", "decline talk request N"},
	{"/switch [N]", "list the talks, or talk in talk N"},
	{"/close", "close the current talk"},
	{"/nick [NAME]", "print your nickname, or set a new one"},
	{"/ab", "address book: list the contacts"},
	{"/ab add ADDRESS NICK", "address book: add a contact"},
	{"/ab rem N", "address book: remove contact N"},
	{"/history", "print the lines typed in this console"},
	{"/exit", "leave the console (the node keeps running)"},
}

// runConsole attaches to the node and runs the line editor until /exit,
// Ctrl-D or the node going away.
func runConsole(c *cli.Context) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	in, ok := c.App.Reader.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return cli.Exit("console: standard input is not a terminal", exitSettings)
	}
	cc, err := dialConsole(c.Context, l.ControlSocket())
	if err != nil {
		return cli.Exit(fmt.Sprintf("console: %v on %s", err, l.Dir), exitFailure)
	}
	defer cc.close()

	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
	}
	defer term.Restore(int(in.Fd()), old)
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, c.App.Writer}, "phpchat:> ")
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	resize := func() {
		if w, h, err := term.GetSize(int(in.Fd())); err == nil {
			t.SetSize(w, h)
		}
	}
	resize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() { // follows the terminal's size until the console ends
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				resize()
			}
		}
	}()
	con := &console{t: t, cc: cc, talks: make(map[int]talkapi.TalkInfo)}
	return con.run(ctx)
}

// console is the state of one attached console.
type console struct {
	t  *term.Terminal
	cc *consoleConn

	mu      sync.Mutex
	current int // the talk lines go to; 0: none
	talks   map[int]talkapi.TalkInfo
	self    talkapi.State
}

func (con *console) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	con.println("")
	con.println("Type '/help' for help.")

	attached := make(chan error, 1)
	var once sync.Once
	go con.cc.readLoop(func(f control.Frame) { // ends when the connection closes
		var ev talkapi.Event
		if err := json.Unmarshal(f.Data, &ev); err != nil {
			return
		}
		if ev.Kind == talkapi.KindAttached {
			once.Do(func() { attached <- nil })
		}
		con.show(ev)
	})
	if err := con.cc.start("console.attach", nil, func(err error) {
		once.Do(func() { attached <- err })
		con.println("ERROR: " + err.Error())
	}); err != nil {
		return cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
	}
	select {
	case err := <-attached:
		if err != nil {
			return cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
		}
	case <-con.cc.done:
		return cli.Exit("console: the node closed the connection", exitFailure)
	case <-time.After(10 * time.Second):
		return cli.Exit("console: the node did not attach the console", exitFailure)
	}

	// The control socket closes connections idle for long; keep it busy.
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				con.cc.call(ctx, "ping", nil, nil)
			}
		}
	}()

	// ReadLine cannot be interrupted; its goroutine ends with the
	// process when the node goes away.
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		for {
			line, err := con.t.ReadLine()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-con.cc.done:
			con.println("The node closed the connection.")
			return cli.Exit("", exitFailure)
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				con.println("exit")
				return nil
			}
			return cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
		case line := <-lines:
			if quit := con.handle(ctx, strings.TrimSpace(line)); quit {
				return nil
			}
		}
	}
}

// println prints a line above the prompt.
func (con *console) println(s string) {
	con.t.Write([]byte(s + "\n"))
}

// printf prints a line above the prompt, dated as the original did.
func (con *console) printf(format string, args ...any) {
	con.println(time.Now().UTC().Format("15:04:05 ") + fmt.Sprintf(format, args...))
}

// setCurrent makes talk n the current one and shows it in the prompt.
func (con *console) setCurrent(n int) {
	con.mu.Lock()
	con.current = n
	prompt := "phpchat:> "
	if t, ok := con.talks[n]; ok {
		prompt = t.Nickname + ":> "
	}
	con.mu.Unlock()
	con.t.SetPrompt(prompt)
	con.t.Write(nil) // SetPrompt does not redraw the prompt on the screen; this does
}

// show prints an event from the node.
func (con *console) show(ev talkapi.Event) {
	name := func() string {
		if ev.Nickname != "" {
			return ev.Nickname
		}
		return ev.Peer
	}
	introduce := func() {
		if ev.FirstTime {
			con.printf("You never talked to %s before.", ev.Peer)
			con.printf("Verify the public keys with your conversation partner on another channel.")
			con.printf("Public key fingerprints:")
			con.printf("  Yours: %s", ev.Fingerprint)
			con.printf("  Peers: %s", ev.PeerFingerprint)
		} else if ev.Contact != "" {
			con.printf("You talked to %s (%s) before.", ev.Peer, ev.Contact)
		}
	}
	forget := func() {
		con.mu.Lock()
		delete(con.talks, ev.Talk)
		cur := con.current
		con.mu.Unlock()
		if cur == ev.Talk {
			con.setCurrent(0)
		}
	}
	switch ev.Kind {
	case talkapi.KindAttached:
		con.mu.Lock()
		con.self = *ev.State
		for _, t := range ev.State.Talks {
			con.talks[t.Talk] = t
		}
		con.mu.Unlock()
		con.printf("Attached to %s as %q.", ev.State.Address, ev.State.Nickname)
		for _, t := range ev.State.Talks {
			switch t.State {
			case "ringing":
				con.printf("User %q wants to talk to you.", t.Nickname)
				con.printf("Type \"/request accept %d\" to get in touch.", t.Talk)
			case "open":
				con.printf("Talk %d with %q is open: /switch %d to talk.", t.Talk, t.Nickname, t.Talk)
			default:
				con.printf("Talk request %d to %s waits for an answer.", t.Talk, t.Peer)
			}
		}
	case talkapi.KindCalling:
		con.mu.Lock()
		con.talks[ev.Talk] = talkapi.TalkInfo{Talk: ev.Talk, Peer: ev.Peer, Nickname: ev.Nickname, State: "calling", Outgoing: true}
		con.mu.Unlock()
		introduce()
		con.printf("Sending talk request to %s ...", name())
	case talkapi.KindRinging:
		con.printf("Talk request sent to %s. Waiting for response ...", name())
	case talkapi.KindResponse:
		forget()
		switch ev.Status {
		case talkapi.StatusDeclined:
			con.printf("Talk request declined.")
		case talkapi.StatusTimedOut:
			con.printf("Talk request timed out.")
		case talkapi.StatusNoUI:
			con.printf("%s has no user interface. Can't talk to you.", name())
		}
	case talkapi.KindFailed:
		forget()
		con.printf("Talk request to %s failed: %s", name(), ev.Text)
	case talkapi.KindRequest:
		con.mu.Lock()
		con.talks[ev.Talk] = talkapi.TalkInfo{Talk: ev.Talk, Peer: ev.Peer, Nickname: ev.Nickname, State: "ringing", Remote: ev.Remote}
		con.mu.Unlock()
		introduce()
		con.printf("User %q wants to talk to you.", ev.Nickname)
		con.printf("Type \"/request accept %d\" to get in touch.", ev.Talk)
	case talkapi.KindRequestClosed:
		forget()
		switch {
		case ev.Status == talkapi.StatusDeclined:
			con.printf("Declined talk request ID %d.", ev.Talk)
		case ev.Status == talkapi.StatusTimedOut:
			con.printf("Talk request ID %d timed-out.", ev.Talk)
		case ev.ByPeer:
			con.printf("Talk request ID %d withdrawn by %q.", ev.Talk, ev.Nickname)
		default:
			con.printf("Talk request ID %d ended: %s", ev.Talk, ev.Text)
		}
	case talkapi.KindOpen:
		con.mu.Lock()
		con.talks[ev.Talk] = talkapi.TalkInfo{Talk: ev.Talk, Peer: ev.Peer, Nickname: ev.Nickname, State: "open", Outgoing: ev.Outgoing}
		switchTo := con.current == 0
		con.mu.Unlock()
		if switchTo {
			con.setCurrent(ev.Talk)
		}
		if ev.Outgoing {
			con.printf("Talk request accepted.")
		} else {
			con.printf("Accepted talk request ID %d.", ev.Talk)
		}
		con.printf("Now talking to %q (talk %d).", ev.Nickname, ev.Talk)
	case talkapi.KindMsg:
		con.mu.Lock()
		cur := con.current
		con.mu.Unlock()
		if cur == ev.Talk {
			con.printf("<%s> %s", ev.Nickname, ev.Text)
		} else {
			con.printf("[%d] <%s> %s", ev.Talk, ev.Nickname, ev.Text)
		}
	case talkapi.KindNick:
		if ev.Mine {
			con.printf("New nickname: %s", ev.Nickname)
			return
		}
		con.mu.Lock()
		t := con.talks[ev.Talk]
		t.Nickname = ev.Nickname
		con.talks[ev.Talk] = t
		cur := con.current
		con.mu.Unlock()
		if cur == ev.Talk {
			con.setCurrent(cur)
		}
		con.printf("User %q is now known as %q.", ev.OldNickname, ev.Nickname)
	case talkapi.KindClosed:
		forget()
		switch {
		case ev.ByPeer:
			con.printf("Talk closed by %q.", ev.Nickname)
		case ev.Text != "":
			con.printf("Talk with %q closed: %s", name(), ev.Text)
		default:
			con.printf("Talk with %q closed.", name())
		}
	case talkapi.KindDropped:
		con.printf("%d events were lost while no console was attached.", ev.Count)
	}
}

// handle runs one typed line; it reports whether to leave.
func (con *console) handle(ctx context.Context, line string) (quit bool) {
	if line == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	if !strings.HasPrefix(line, "/") {
		con.mu.Lock()
		cur := con.current
		con.mu.Unlock()
		if cur == 0 {
			con.println("Not talking to anyone. Usage: /connect ADDRESS@HOST:PORT, /talk NICK|ADDRESS or /request accept N")
			return false
		}
		if err := con.cc.call(ctx, "talk.send", talkapi.SendArgs{Talk: cur, Text: line}, nil); err != nil {
			con.println("ERROR: " + errText(err))
		}
		return false
	}
	f := strings.Fields(line)
	usage := func(u ...string) {
		con.println("Usage: " + u[0])
		for _, more := range u[1:] {
			con.println("       " + more)
		}
	}
	switch cmd, args := f[0], f[1:]; cmd {
	case "/help":
		if len(args) != 0 {
			usage("/help")
			return false
		}
		con.println("")
		for _, h := range consoleHelp {
			con.println(fmt.Sprintf("%-28s - %s", h[0], h[1]))
		}
	case "/exit":
		if len(args) != 0 {
			usage("/exit")
			return false
		}
		con.println("exit")
		return true
	case "/connect":
		if len(args) != 1 || !strings.Contains(args[0], ":") {
			usage("/connect HOST:PORT", "/connect ADDRESS@HOST:PORT")
			return false
		}
		con.printf("Connecting to %s ...", args[0])
		var ti talkapi.TalkInfo
		if err := con.cc.call(ctx, "talk.connect", talkapi.ConnectArgs{Target: args[0]}, &ti); err != nil {
			con.printf("Connection to %s failed: %s", args[0], errText(err))
			return false
		}
		con.printf("Connection to %s established.", args[0])
	case "/talk":
		if len(args) != 1 {
			usage("/talk NICK|ADDRESS")
			return false
		}
		if err := con.cc.call(ctx, "talk.request", talkapi.PeerArgs{Peer: args[0]}, nil); err != nil {
			con.println("ERROR: " + errText(err))
		}
	case "/request":
		switch {
		case len(args) == 0:
			var list []talkapi.TalkInfo
			if err := con.cc.call(ctx, "talk.requests", nil, &list); err != nil {
				con.println("ERROR: " + errText(err))
				return false
			}
			con.println("")
			con.println(fmt.Sprintf(" %2s %-22s %-20s %s", "ID", "REMOTE", "NICKNAME", "ADDRESS"))
			for _, t := range list {
				con.println(fmt.Sprintf(" %2d %-22s %-20s %s", t.Talk, t.Remote, t.Nickname, t.Peer))
			}
			con.println("END OF LIST")
		case len(args) == 2 && (args[0] == "accept" || args[0] == "decline"):
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				usage("/request accept N", "/request decline N")
				return false
			}
			fn := "talk.accept"
			if args[0] == "decline" {
				fn = "talk.decline"
			}
			if err := con.cc.call(ctx, fn, talkapi.TalkArgs{Talk: n}, nil); err != nil {
				con.printf("Talk request ID %d: %s", n, errText(err))
			}
		default:
			usage("/request", "/request accept N", "/request decline N")
		}
	case "/close":
		con.mu.Lock()
		cur := con.current
		con.mu.Unlock()
		if len(args) != 0 {
			usage("/close")
			return false
		}
		if cur == 0 {
			con.printf("Nothing done.")
			return false
		}
		if err := con.cc.call(ctx, "talk.close", talkapi.TalkArgs{Talk: cur}, nil); err != nil {
			con.println("ERROR: " + errText(err))
		}
	case "/switch":
		switch len(args) {
		case 0:
			var list []talkapi.TalkInfo
			if err := con.cc.call(ctx, "talk.list", nil, &list); err != nil {
				con.println("ERROR: " + errText(err))
				return false
			}
			con.mu.Lock()
			cur := con.current
			con.mu.Unlock()
			con.println("")
			for _, t := range list {
				mark := " "
				if t.Talk == cur {
					mark = "*"
				}
				con.println(fmt.Sprintf("%s%2d %-8s %-20s %s", mark, t.Talk, t.State, t.Nickname, t.Peer))
			}
			con.println("END OF LIST")
		case 1:
			n, err := strconv.Atoi(args[0])
			con.mu.Lock()
			t, ok := con.talks[n]
			con.mu.Unlock()
			if err != nil || !ok || t.State != "open" {
				usage("/switch N (N: an open talk; /switch lists them)")
				return false
			}
			con.setCurrent(n)
			con.printf("Now talking to %q (talk %d).", t.Nickname, n)
		default:
			usage("/switch [N]")
		}
	case "/nick":
		// A nickname is one word, as in the original (which kept only
		// letters, digits, '.', '_' and '-'); the node checks the rest.
		if len(args) > 1 {
			usage("/nick [NAME] (a nickname is one word)")
			return false
		}
		var name, nick string // name: the new one, or none to show the current
		if len(args) == 1 {
			name = args[0]
		}
		if err := con.cc.call(ctx, "nick", talkapi.NickArgs{Nickname: name}, &nick); err != nil {
			con.println("ERROR: " + errText(err))
			return false
		}
		if len(args) == 0 {
			con.printf("Your nickname: %s", nick)
		}
	case "/ab":
		con.addressBook(ctx, args, usage)
	case "/history":
		if len(args) != 0 {
			usage("/history")
			return false
		}
		con.println("")
		h := con.t.History
		for i := h.Len() - 1; i >= 0; i-- {
			con.println(h.At(i))
		}
		con.println("END OF LIST")
	default:
		con.println(fmt.Sprintf("ERROR: Command %q not found. Usage: /help lists the commands.", cmd))
	}
	return false
}

func (con *console) addressBook(ctx context.Context, args []string, usage func(...string)) {
	switch {
	case len(args) == 0:
		var list []store.Contact
		if err := con.cc.call(ctx, "contacts.list", nil, &list); err != nil {
			con.println("ERROR: " + errText(err))
			return
		}
		con.println("")
		con.println(fmt.Sprintf(" %3s %-61s  %s", "ID", "ADDRESS", "NICKNAME"))
		for _, ct := range list {
			con.println(fmt.Sprintf(" %3d %-61s  %s", ct.ID, ct.Address, ct.Nickname))
		}
		con.println("END OF LIST")
	case len(args) == 3 && args[0] == "add":
		var ct store.Contact
		if err := con.cc.call(ctx, "contacts.add", control.ContactAdd{Address: args[1], Nickname: args[2]}, &ct); err != nil {
			con.println("ERROR: " + errText(err))
			return
		}
		con.printf("Added %d %s to the address book.", ct.ID, ct.Nickname)
	case len(args) == 2 && args[0] == "rem":
		id, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			usage("/ab rem N")
			return
		}
		if err := con.cc.call(ctx, "contacts.remove", control.ContactRemove{ID: id}, nil); err != nil {
			con.printf("ERROR: Can not remove %d from addressbook: %s", id, errText(err))
			return
		}
		con.printf("Removed %d from addressbook.", id)
	default:
		usage("/ab", "/ab add ADDRESS NICK", "/ab rem N")
	}
}

// errText is an error for the user: the node's text without the wrapping.
func errText(err error) string {
	var re *control.RemoteError
	if errors.As(err, &re) {
		return re.Text
	}
	return err.Error()
}

// consoleConn is a control-socket connection that carries calls and, at
// the same time, the stream of events of console.attach: a reading
// goroutine hands replies to their calls and the rest to the console.
type consoleConn struct {
	nc   net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex
	done chan struct{} // closed when the connection is gone

	mu      sync.Mutex
	rid     uint64
	pending map[uint64]chan control.Frame
	stream  uint64      // the rid of console.attach
	onErr   func(error) // its error, if the node refuses it
}

func dialConsole(ctx context.Context, path string) (*consoleConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w (control socket %s: %v)", control.ErrNotRunning, path, err)
	}
	return &consoleConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), done: make(chan struct{}), pending: make(map[uint64]chan control.Frame)}, nil
}

func (cc *consoleConn) close() { cc.nc.Close() }

// readLoop reads frames until the connection closes, passing events to
// onEvent.
func (cc *consoleConn) readLoop(onEvent func(control.Frame)) {
	defer close(cc.done)
	for {
		line, err := control.ReadLine(cc.br, control.MaxFrame)
		if err != nil {
			return
		}
		var f control.Frame
		if json.Unmarshal(line, &f) != nil {
			continue
		}
		cc.mu.Lock()
		ch := cc.pending[f.RID]
		delete(cc.pending, f.RID)
		stream, onErr := cc.stream, cc.onErr
		cc.mu.Unlock()
		switch {
		case ch != nil:
			ch <- f // buffered
		case f.Name == talkapi.EventFrame:
			onEvent(f)
		case f.RID == stream && f.Name == "error" && onErr != nil:
			onErr(remoteError(f))
		}
	}
}

func (cc *consoleConn) write(name string, rid uint64, data any) error {
	b, err := json.Marshal(struct {
		Name string `json:"name"`
		RID  uint64 `json:"rid"`
		Data any    `json:"data,omitempty"`
	}{name, rid, data})
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := cc.nc.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s: %w", name, err)
	}
	return nil
}

// start sends a request whose answer is a stream of events; onErr gets
// the node's refusal, if any.
func (cc *consoleConn) start(name string, data any, onErr func(error)) error {
	cc.mu.Lock()
	cc.rid++
	cc.stream, cc.onErr = cc.rid, onErr
	rid := cc.rid
	cc.mu.Unlock()
	return cc.write(name, rid, data)
}

// call sends a request and decodes its reply into out (if not nil).
func (cc *consoleConn) call(ctx context.Context, name string, data, out any) error {
	ch := make(chan control.Frame, 1)
	cc.mu.Lock()
	cc.rid++
	rid := cc.rid
	cc.pending[rid] = ch
	cc.mu.Unlock()
	defer func() {
		cc.mu.Lock()
		delete(cc.pending, rid)
		cc.mu.Unlock()
	}()
	if err := cc.write(name, rid, data); err != nil {
		return err
	}
	select {
	case f := <-ch:
		if f.Name == "error" {
			return remoteError(f)
		}
		if out != nil {
			if err := json.Unmarshal(f.Data, out); err != nil {
				return fmt.Errorf("%s: bad reply: %w", name, err)
			}
		}
		return nil
	case <-cc.done:
		return fmt.Errorf("%s: the node closed the connection", name)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
}

func remoteError(f control.Frame) error {
	var e control.RemoteError
	if err := json.Unmarshal(f.Data, &e.ErrorData); err != nil {
		return fmt.Errorf("bad error frame: %w", err)
	}
	return &e
}
