package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
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
	cl, err := control.Dial(c.Context, l.ControlSocket())
	if err != nil {
		return cli.Exit(fmt.Sprintf("console: %v on %s", err, l.Dir), exitFailure)
	}
	defer cl.Close()

	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
	}
	defer term.Restore(int(in.Fd()), old)
	scr := &screen{w: c.App.Writer}
	keys := &keyFilter{r: in, cancel: make(chan struct{}, 1)}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{keys, scr}, "phpchat:> ")
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
	con := &console{t: t, scr: scr, cl: cl, keys: keys, talks: make(map[int]talkapi.TalkInfo)}
	return con.run(ctx)
}

// console is the state of one attached console.
type console struct {
	t    *term.Terminal
	scr  *screen
	cl   *control.Client
	keys *keyFilter

	mu      sync.Mutex
	current int // the talk lines go to; 0: none
	talks   map[int]talkapi.TalkInfo
	self    talkapi.State
	asking  string // the prompt of the message being composed; "": none

	// Used by the input loop only.
	draft   *draft   // the message being composed; nil: none
	compose int      // the step of the draft: composeSubject, …
	text    []string // the draft's text so far
	listed  []string // the message ids of the last /msg listing
}

// keyFilter passes the terminal's input on. While a message is being
// composed it turns Ctrl-C and Ctrl-D, which would end the console, into
// Ctrl-U (erase the line) and tells cancelled, to drop the message.
type keyFilter struct {
	r         io.Reader
	composing atomic.Bool
	cancel    chan struct{} // buffered
}

func (k *keyFilter) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if k.composing.Load() {
		for i, c := range p[:n] {
			if c == 3 || c == 4 {
				p[i] = 0x15
				select {
				case k.cancel <- struct{}{}:
				default:
				}
			}
		}
	}
	return n, err
}

// cancelled is a token for each Ctrl-C or Ctrl-D typed while composing;
// a nil k gives none.
func (k *keyFilter) cancelled() <-chan struct{} {
	if k == nil {
		return nil
	}
	return k.cancel
}

// setComposing tells k whether a message is being composed.
func (k *keyFilter) setComposing(on bool) {
	if k != nil {
		k.composing.Store(on)
	}
}

// screen is the terminal's output. It notes whether the cursor was left
// in the middle of a line, and once ended drops what is written, so that
// nothing draws the prompt again after the console's last line.
type screen struct {
	w io.Writer

	mu      sync.Mutex
	midLine bool
	ended   bool
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || len(p) == 0 {
		return len(p), nil
	}
	s.midLine = p[len(p)-1] != '\n'
	return s.w.Write(p)
}

// end finishes a line left unfinished and drops all later output.
func (s *screen) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended && s.midLine {
		s.w.Write([]byte("\r\n"))
	}
	s.ended = true
}

// run runs the console until it ends, then leaves the screen clean for
// the shell: no prompt, the cursor at the start of a line.
func (con *console) run(ctx context.Context) error {
	last, err := con.loop(ctx)
	con.finish(last)
	return err
}

// finish prints the console's last line (if any) in place of the prompt,
// which is not drawn again.
func (con *console) finish(last string) {
	con.t.SetPrompt("")
	if last != "" {
		con.println(last)
	} else {
		con.t.Write(nil) // clears the prompt drawn on the screen
	}
	con.scr.end()
}

// loop attaches the console and runs typed lines until the console ends.
// It returns the line to print last.
func (con *console) loop(ctx context.Context) (last string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	con.println("")
	con.println("Type '/help' for help.")

	attached := make(chan error, 1)
	var once sync.Once
	gone := make(chan struct{}) // closed when the node closes the connection
	events := con.cl.Events()
	go func() {
		defer close(gone)
		for f := range events {
			con.receive(f, func(err error) { once.Do(func() { attached <- err }) })
		}
	}()
	if _, err := con.cl.Send("console.attach", nil); err != nil {
		return "", cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
	}
	select {
	case err := <-attached:
		if err != nil {
			return "", cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
		}
	case <-gone:
		return "", cli.Exit("console: the node closed the connection", exitFailure)
	case <-time.After(10 * time.Second):
		return "", cli.Exit("console: the node did not attach the console", exitFailure)
	}

	go con.keepAlive(ctx)
	lines, readErr := con.readLines(ctx)
	for {
		select {
		case <-ctx.Done():
			return "", nil
		case <-gone:
			return "The node closed the connection.", cli.Exit("", exitFailure)
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return "exit", nil
			}
			return "", cli.Exit(fmt.Sprintf("console: %v", err), exitFailure)
		case <-con.keys.cancelled():
			if con.draft != nil {
				con.endDraft("Nothing created, nothing sent.")
			}
		case line := <-lines:
			if con.draft != nil {
				con.composeLine(ctx, line)
				continue
			}
			if quit := con.handle(ctx, strings.TrimSpace(line)); quit {
				return "exit", nil
			}
		}
	}
}

// receive handles a frame that answers no call: an event, or the node's
// refusal of console.attach. attached is told of the attachment or its
// refusal.
func (con *console) receive(f control.Frame, attached func(error)) {
	switch f.Name {
	case talkapi.EventFrame:
		var ev talkapi.Event
		if err := json.Unmarshal(f.Data, &ev); err != nil {
			return
		}
		if ev.Kind == talkapi.KindAttached {
			attached(nil)
		}
		con.show(ev)
	case control.MsgEventFrame:
		var ev msgapi.Event
		if err := json.Unmarshal(f.Data, &ev); err == nil {
			con.showMail(ev)
		}
	case "error": // console.attach is the only request not waited for
		err := control.DecodeError(f)
		attached(err)
		con.println("ERROR: " + err.Error())
	}
}

// keepAlive pings the node until ctx ends: the control socket closes
// connections idle for long.
func (con *console) keepAlive(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			con.cl.Call(ctx, "ping", nil, nil, nil)
		}
	}
}

// readLines runs the line editor, passing on the lines typed until ctx
// ends, and then the error that ends the input (io.EOF for Ctrl-D).
// ReadLine cannot be interrupted: its goroutine ends with the process.
func (con *console) readLines(ctx context.Context) (<-chan string, <-chan error) {
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
	return lines, readErr
}

// println prints a line above the prompt.
func (con *console) println(s string) {
	con.t.Write([]byte(s + "\n"))
}

// printf prints a line above the prompt, dated as the original did.
func (con *console) printf(format string, args ...any) {
	con.println(time.Now().UTC().Format("15:04:05 ") + fmt.Sprintf(format, args...))
}

// usage prints usage lines.
func (con *console) usage(lines []string) {
	con.println("Usage: " + lines[0])
	for _, more := range lines[1:] {
		con.println("       " + more)
	}
}

// currentTalk returns the talk lines go to; 0: none.
func (con *console) currentTalk() int {
	con.mu.Lock()
	defer con.mu.Unlock()
	return con.current
}

// setCurrent makes talk n the current one and shows it in the prompt.
func (con *console) setCurrent(n int) {
	con.mu.Lock()
	con.current = n
	prompt := "phpchat:> "
	if t, ok := con.talks[n]; ok {
		prompt = t.Nickname + ":> "
	}
	if con.asking != "" { // a message is being composed: its prompt stays
		prompt = con.asking
	}
	con.mu.Unlock()
	con.t.SetPrompt(prompt)
	con.t.Write(nil) // SetPrompt does not redraw the prompt on the screen; this does
}

// errText is an error for the user: the node's text without the wrapping.
func errText(err error) string {
	var re *control.RemoteError
	if errors.As(err, &re) {
		return re.Text
	}
	return err.Error()
}

// A command is one of the console's slash commands.
type command struct {
	name  string
	forms []form // how it is typed: /help lists them, a wrong use prints them
	run   func(con *console, ctx context.Context, args []string) error
}

// A form is one way of typing a command, and what it does.
type form struct{ usage, does string }

// Errors of a command's run that handle acts on.
var (
	errExit  = errors.New("exit")  // leave the console
	errUsage = errors.New("usage") // print the command's forms
)

// misuse is a command typed wrong; it carries the usage lines to print.
type misuse []string

func (u misuse) Error() string { return "usage: " + strings.Join(u, "; ") }

// commands returns the console's commands in the order /help lists them.
// It is a function, not a variable, since /help reads it.
func commands() []command {
	return []command{
		{"/help", []form{{"/help", "print this list"}}, (*console).help},
		{"/connect", []form{
			{"/connect HOST:PORT", "connect to a node and ask it to talk"},
			{"/connect ADDRESS@HOST:PORT", "the same, checking the node's address"},
		}, (*console).connect},
		{"/talk", []form{{"/talk NICK|ADDRESS", "ask a connected node to talk"}}, (*console).talkTo},
		{"/request", []form{
			{"/request", "list the talk requests waiting for you"},
			{"/request accept N", "accept talk request N"},
			{"/request decline N", "decline talk request N"},
		}, (*console).request},
		{"/switch", []form{{"/switch [N]", "list the talks, or talk in talk N"}}, (*console).switchTalk},
		{"/close", []form{{"/close", "close the current talk"}}, (*console).closeTalk},
		{"/nick", []form{{"/nick [NAME]", "print your nickname, or set a new one"}}, (*console).nick},
		{"/msg", []form{
			{"/msg", "list the offline messages (* marks the unread)"},
			{"/msg new ADDRESS|NICK", "write an offline message"},
			{"/msg read NO|ID", "print message NO of the list (or with that id)"},
		}, (*console).msg},
		{"/ab", []form{
			{"/ab", "address book: list the contacts"},
			{"/ab add ADDRESS NICK", "address book: add a contact"},
			{"/ab rem N", "address book: remove contact N"},
		}, (*console).addressBook},
		{"/history", []form{{"/history", "print the lines typed in this console"}}, (*console).history},
		{"/exit", []form{{"/exit", "leave the console (the node keeps running)"}}, (*console).exit},
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
		con.say(ctx, line)
		return false
	}
	f := strings.Fields(line)
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == f[0] })
	if i < 0 {
		con.println(fmt.Sprintf("ERROR: Command %q not found. Usage: /help lists the commands.", f[0]))
		return false
	}
	err := cmds[i].run(con, ctx, f[1:])
	var u misuse
	switch {
	case err == nil:
	case errors.Is(err, errExit):
		return true
	case errors.Is(err, errUsage):
		for _, fm := range cmds[i].forms {
			u = append(u, fm.usage)
		}
		con.usage(u)
	case errors.As(err, &u):
		con.usage(u)
	default:
		con.println("ERROR: " + errText(err))
	}
	return false
}

// say sends a line that is not a command to the current talk.
func (con *console) say(ctx context.Context, line string) {
	cur := con.currentTalk()
	if cur == 0 {
		con.println("Not talking to anyone. Usage: /connect ADDRESS@HOST:PORT, /talk NICK|ADDRESS or /request accept N")
		return
	}
	if err := con.cl.Call(ctx, "talk.send", talkapi.SendArgs{Talk: cur, Text: line}, nil, nil); err != nil {
		con.println("ERROR: " + errText(err))
	}
}

func (con *console) help(_ context.Context, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	con.println("")
	for _, c := range commands() {
		for _, fm := range c.forms {
			con.println(fmt.Sprintf("%-28s - %s", fm.usage, fm.does))
		}
	}
	return nil
}

func (con *console) exit(_ context.Context, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	return errExit
}

func (con *console) connect(ctx context.Context, args []string) error {
	if len(args) != 1 || !strings.Contains(args[0], ":") {
		return errUsage
	}
	con.printf("Connecting to %s ...", args[0])
	if err := con.cl.Call(ctx, "talk.connect", talkapi.ConnectArgs{Target: args[0]}, nil, nil); err != nil {
		con.printf("Connection to %s failed: %s", args[0], errText(err))
		return nil
	}
	con.printf("Connection to %s established.", args[0])
	return nil
}

func (con *console) talkTo(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	return con.cl.Call(ctx, "talk.request", talkapi.PeerArgs{Peer: args[0]}, nil, nil)
}

func (con *console) request(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0:
		var list []talkapi.TalkInfo
		if err := con.cl.Call(ctx, "talk.requests", nil, &list, nil); err != nil {
			return err
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
			return misuse{"/request accept N", "/request decline N"}
		}
		// talk.accept or talk.decline
		if err := con.cl.Call(ctx, "talk."+args[0], talkapi.TalkArgs{Talk: n}, nil, nil); err != nil {
			con.printf("Talk request ID %d: %s", n, errText(err))
		}
	default:
		return errUsage
	}
	return nil
}

func (con *console) closeTalk(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	cur := con.currentTalk()
	if cur == 0 {
		con.printf("Nothing done.")
		return nil
	}
	return con.cl.Call(ctx, "talk.close", talkapi.TalkArgs{Talk: cur}, nil, nil)
}

func (con *console) switchTalk(ctx context.Context, args []string) error {
	switch len(args) {
	case 0:
		var list []talkapi.TalkInfo
		if err := con.cl.Call(ctx, "talk.list", nil, &list, nil); err != nil {
			return err
		}
		cur := con.currentTalk()
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
			return misuse{"/switch N (N: an open talk; /switch lists them)"}
		}
		con.setCurrent(n)
		con.printf("Now talking to %q (talk %d).", t.Nickname, n)
	default:
		return errUsage
	}
	return nil
}

func (con *console) nick(ctx context.Context, args []string) error {
	// A nickname is one word, as in the original (which kept only
	// letters, digits, '.', '_' and '-'); the node checks the rest.
	if len(args) > 1 {
		return misuse{"/nick [NAME] (a nickname is one word)"}
	}
	var name, nick string // name: the new one, or none to show the current
	if len(args) == 1 {
		name = args[0]
	}
	if err := con.cl.Call(ctx, "nick", talkapi.NickArgs{Nickname: name}, &nick, nil); err != nil {
		return err
	}
	if len(args) == 0 {
		con.printf("Your nickname: %s", nick)
	}
	return nil
}

func (con *console) addressBook(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0:
		var list []store.Contact
		if err := con.cl.Call(ctx, "contacts.list", nil, &list, nil); err != nil {
			return err
		}
		con.println("")
		con.println(fmt.Sprintf(" %3s %-61s  %s", "ID", "ADDRESS", "NICKNAME"))
		for _, ct := range list {
			con.println(fmt.Sprintf(" %3d %-61s  %s", ct.ID, ct.Address, ct.Nickname))
		}
		con.println("END OF LIST")
	case len(args) == 3 && args[0] == "add":
		var ct store.Contact
		if err := con.cl.Call(ctx, "contacts.add", control.ContactAdd{Address: args[1], Nickname: args[2]}, &ct, nil); err != nil {
			return err
		}
		con.printf("Added %d %s to the address book.", ct.ID, ct.Nickname)
	case len(args) == 2 && args[0] == "rem":
		id, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return misuse{"/ab rem N"}
		}
		if err := con.cl.Call(ctx, "contacts.remove", control.ContactRemove{ID: id}, nil, nil); err != nil {
			con.printf("ERROR: Can not remove %d from addressbook: %s", id, errText(err))
			return nil
		}
		con.printf("Removed %d from addressbook.", id)
	default:
		return errUsage
	}
	return nil
}

func (con *console) history(_ context.Context, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	con.println("")
	h := con.t.History
	for i := h.Len() - 1; i >= 0; i-- {
		con.println(h.At(i))
	}
	con.println("END OF LIST")
	return nil
}

// shows has, for each kind of event, the function that shows it.
var shows = map[string]func(*console, talkapi.Event){
	talkapi.KindAttached:      (*console).showAttached,
	talkapi.KindCalling:       (*console).showCalling,
	talkapi.KindRinging:       (*console).showRinging,
	talkapi.KindResponse:      (*console).showResponse,
	talkapi.KindFailed:        (*console).showFailed,
	talkapi.KindRequest:       (*console).showRequest,
	talkapi.KindRequestClosed: (*console).showRequestClosed,
	talkapi.KindOpen:          (*console).showOpen,
	talkapi.KindMsg:           (*console).showMsg,
	talkapi.KindNick:          (*console).showNick,
	talkapi.KindClosed:        (*console).showClosed,
	talkapi.KindDropped:       (*console).showDropped,
}

// show prints an event from the node; it ignores kinds it does not know.
func (con *console) show(ev talkapi.Event) {
	if fn, ok := shows[ev.Kind]; ok {
		fn(con, ev)
	}
}

// peerName is how ev names the peer: by nickname, else by address.
func peerName(ev talkapi.Event) string {
	if ev.Nickname != "" {
		return ev.Nickname
	}
	return ev.Peer
}

// introduce tells whether the user talked to ev's peer before, with the
// fingerprints to compare if not.
func (con *console) introduce(ev talkapi.Event) {
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

// remember notes a talk, new or changed.
func (con *console) remember(t talkapi.TalkInfo) {
	con.mu.Lock()
	con.talks[t.Talk] = t
	con.mu.Unlock()
}

// forget drops talk n, which is no longer the current one if it was.
func (con *console) forget(n int) {
	con.mu.Lock()
	delete(con.talks, n)
	cur := con.current
	con.mu.Unlock()
	if cur == n {
		con.setCurrent(0)
	}
}

func (con *console) showAttached(ev talkapi.Event) {
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
}

func (con *console) showCalling(ev talkapi.Event) {
	con.remember(talkapi.TalkInfo{Talk: ev.Talk, Peer: ev.Peer, Nickname: ev.Nickname, State: "calling", Outgoing: true})
	con.introduce(ev)
	con.printf("Sending talk request to %s ...", peerName(ev))
}

func (con *console) showRinging(ev talkapi.Event) {
	con.printf("Talk request sent to %s. Waiting for response ...", peerName(ev))
}

func (con *console) showResponse(ev talkapi.Event) {
	con.forget(ev.Talk)
	switch ev.Status {
	case talkapi.StatusDeclined:
		con.printf("Talk request declined.")
	case talkapi.StatusTimedOut:
		con.printf("Talk request timed out.")
	case talkapi.StatusNoUI:
		con.printf("%s has no user interface. Can't talk to you.", peerName(ev))
	}
}

func (con *console) showFailed(ev talkapi.Event) {
	con.forget(ev.Talk)
	con.printf("Talk request to %s failed: %s", peerName(ev), ev.Text)
}

func (con *console) showRequest(ev talkapi.Event) {
	con.remember(talkapi.TalkInfo{Talk: ev.Talk, Peer: ev.Peer, Nickname: ev.Nickname, State: "ringing", Remote: ev.Remote})
	con.introduce(ev)
	con.printf("User %q wants to talk to you.", ev.Nickname)
	con.printf("Type \"/request accept %d\" to get in touch.", ev.Talk)
}

func (con *console) showRequestClosed(ev talkapi.Event) {
	con.forget(ev.Talk)
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
}

// showOpen makes a talk that opens the current one if there is none.
func (con *console) showOpen(ev talkapi.Event) {
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
}

// showMsg prints a line of a talk, marked with the talk's number if it is
// not the current one.
func (con *console) showMsg(ev talkapi.Event) {
	if con.currentTalk() == ev.Talk {
		con.printf("<%s> %s", ev.Nickname, ev.Text)
	} else {
		con.printf("[%d] <%s> %s", ev.Talk, ev.Nickname, ev.Text)
	}
}

func (con *console) showNick(ev talkapi.Event) {
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
		con.setCurrent(cur) // the prompt names the peer
	}
	con.printf("User %q is now known as %q.", ev.OldNickname, ev.Nickname)
}

func (con *console) showClosed(ev talkapi.Event) {
	con.forget(ev.Talk)
	switch {
	case ev.ByPeer:
		con.printf("Talk closed by %q.", ev.Nickname)
	case ev.Text != "":
		con.printf("Talk with %q closed: %s", peerName(ev), ev.Text)
	default:
		con.printf("Talk with %q closed.", peerName(ev))
	}
}

func (con *console) showDropped(ev talkapi.Event) {
	con.printf("%d events were lost while no console was attached.", ev.Count)
}

// The steps of composing a message.
const (
	composeSubject = iota // the next line is the subject
	composeText           // the next line is text, or "." to end it
	composeConfirm        // the next line answers "Send the message?"
)

// msg lists, composes and reads offline messages.
func (con *console) msg(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0:
		return con.listMessages(ctx)
	case len(args) == 2 && (args[0] == "new" || args[0] == "n"):
		return con.newMessage(ctx, args[1])
	case len(args) == 2 && (args[0] == "read" || args[0] == "r"):
		return con.readMessage(ctx, args[1])
	}
	return errUsage
}

func (con *console) listMessages(ctx context.Context) error {
	var list []msgapi.Summary
	if err := con.cl.Call(ctx, "msg.list", nil, &list, nil); err != nil {
		return err
	}
	con.listed = con.listed[:0]
	con.println("")
	con.println(fmt.Sprintf("  # N %-6s %-19s %-16s %-56s %s", "BOX", "DATE", "STATE", "FROM/TO", "SUBJECT"))
	for i, m := range list {
		con.listed = append(con.listed, m.ID)
		mark := " "
		if m.Box == "inbox" && !m.Read {
			mark = "*"
		}
		con.println(fmt.Sprintf("%3d %s %-6s %-19s %-16s %-56s %s", i+1, mark, m.Box, m.Date.Local().Format(time.DateTime), stateText(m), m.Peer, printable(m.Subject)))
	}
	con.println("END OF LIST")
	return nil
}

// newMessage starts composing a message to an address or nickname. The
// input loop then passes the lines typed to composeLine, so that events
// keep coming while the user writes.
func (con *console) newMessage(ctx context.Context, to string) error {
	p, err := recipient(ctx, con.cl, to)
	if err != nil {
		return err
	}
	con.mu.Lock()
	self := con.self.Address
	con.mu.Unlock()
	if p.Address.String() == self {
		con.printf("Send a message to yourself? That is not possible.")
		return nil
	}
	var in node.Info
	if err := con.cl.Call(ctx, "info", nil, &in, nil); err != nil {
		return err
	}
	from, domain := mailAddress(in)
	con.draft = &draft{From: from, To: mail.Address{Name: p.Name, Address: p.Address.String() + "@" + domain}}
	con.text = nil
	con.compose = composeSubject
	con.keys.setComposing(true)
	con.printf("New message to %s. Ctrl-C or Ctrl-D drops it.", con.draft.To.String())
	con.setPrompt("Subject: ")
	return nil
}

// composeLine takes a line typed while composing.
func (con *console) composeLine(ctx context.Context, line string) {
	switch con.compose {
	case composeSubject:
		con.draft.Subject = strings.TrimSpace(line)
		con.println("Enter the text. End it with a line holding only a dot (.).")
		con.compose = composeText
		con.setPrompt("> ")
	case composeText:
		if line == "." {
			con.compose = composeConfirm
			con.setPrompt("Send the message? [y/n] ")
			return
		}
		con.text = append(con.text, line)
	case composeConfirm:
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			con.sendDraft(ctx)
		case "n", "no":
			con.endDraft("Nothing created, nothing sent.")
		default:
			con.println("Answer y to send the message, n to drop it.")
		}
	}
}

// sendDraft queues the message composed. If the node refuses it, the
// draft stays, to try again.
func (con *console) sendDraft(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	d := *con.draft
	d.Body = []byte(strings.Join(con.text, "\n"))
	d.Date = time.Now()
	content, err := buildMessage(d)
	if err == nil && len(content) > maxSendContent {
		err = fmt.Errorf("the message is %d bytes, more than the %d that the console can hand to the node", len(content), maxSendContent)
	}
	var id control.MsgID
	if err == nil {
		addr, _, _ := strings.Cut(d.To.Address, "@")
		err = con.cl.Call(ctx, "msg.send", control.MsgSend{To: addr, Content: content}, &id, nil)
	}
	if err != nil {
		con.println("ERROR: " + errText(err))
		con.println("Answer y to try again, n to drop the message.")
		return
	}
	con.endDraft(fmt.Sprintf("OK: message %s queued.", id.ID))
}

// endDraft ends composing, printing how it ended.
func (con *console) endDraft(how string) {
	con.draft, con.text = nil, nil
	con.keys.setComposing(false)
	con.printf("%s", how)
	con.setPrompt("") // the prompt of the talk again
}

// setPrompt shows the prompt of a step of composing a message; "" ends
// it, back to the prompt of the current talk.
func (con *console) setPrompt(p string) {
	con.mu.Lock()
	con.asking = p
	con.mu.Unlock()
	con.setCurrent(con.currentTalk())
}

// readMessage prints a message, by its number in the last listing or its
// id (or a unique prefix of it); the node marks it read.
func (con *console) readMessage(ctx context.Context, which string) error {
	id := which
	if n, err := strconv.Atoi(which); err == nil && len(which) <= 4 {
		if con.listed == nil { // no /msg yet: number the list as /msg would
			var list []msgapi.Summary
			if err := con.cl.Call(ctx, "msg.list", nil, &list, nil); err != nil {
				return err
			}
			for _, m := range list {
				con.listed = append(con.listed, m.ID)
			}
		}
		if n < 1 || n > len(con.listed) {
			con.printf("ERROR: no message %d in the list: /msg lists them.", n)
			return nil
		}
		id = con.listed[n-1]
	}
	var m msgapi.Message
	if err := con.cl.Call(ctx, "msg.read", control.MsgID{ID: id}, &m, nil); err != nil {
		con.printf("ERROR: could not read message %q: %s", which, errText(err))
		return nil
	}
	con.showMessage(m)
	return nil
}

// showMessage prints a message's headers, text and attachments.
func (con *console) showMessage(m msgapi.Message) {
	r, err := readMessageText(m.Content)
	con.println("")
	con.println("----- MESSAGE BEGIN -----")
	if err != nil {
		con.println("WARNING: " + printable(err.Error()) + ". Only meta data available.")
	}
	field := func(k, v string) { con.println(fmt.Sprintf("%-9s %s", k+":", printable(v))) }
	field("Subject", m.Subject)
	if r.Header != nil {
		field("From", decodeHeader(r.Header.Get("From")))
		field("To", decodeHeader(r.Header.Get("To")))
		field("Date", r.Header.Get("Date"))
	}
	if m.Box == "inbox" {
		field("Sender", m.Peer+" (verified)")
	} else {
		field("Recipient", m.Peer)
	}
	field("Msg ID", m.ID)
	field("Status", stateText(m.Summary))
	if err == nil {
		con.println("")
		for _, l := range strings.Split(strings.TrimRight(r.Text, "\n"), "\n") {
			con.println(printable(l))
		}
		for _, a := range r.Attachments {
			con.println(printable("[Attachment: " + a + "]"))
		}
	}
	con.println("----- MESSAGE END -----")
}

// showMail prints an event of the offline-message service: a message
// that arrived, or one sent that reached a final state.
func (con *console) showMail(ev msgapi.Event) {
	short := ev.ID[:min(len(ev.ID), 12)]
	switch {
	case ev.Kind == msgapi.KindMail:
		con.printf("You got mail. From %s, subject %q (/msg read %s).", printable(ev.From), printable(ev.Subject), short)
	case ev.Kind == msgapi.KindState && slices.Contains([]string{msgapi.StateDelivered, msgapi.StateRefused, msgapi.StateExpired}, ev.State):
		con.printf("Message %s: %s.", short, ev.State)
	}
}
