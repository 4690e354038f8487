package web

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/messages"
	"github.com/phpchat/phpchat-node/subsystems/talk"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// testBits is the stamp price of the test network: cheap to mint.
const testBits = 8

// startNode starts an in-process node with the talk and offline-message
// services (and, if web is set, the info service and a web console).
func startNode(t *testing.T, id *identity.Identity, nick string, web *Server, boot ...string) *nodetest.Node {
	t.Helper()
	n, err := nodetest.Start(nodetest.Config{
		Dir: t.TempDir(), Identity: id, Bootstrap: boot,
		Hashcash: wire.HashcashPolicy{talk.Purpose: testBits, messages.Purpose: testBits},
		Names:    append(append([]string{}, talk.Names...), messages.Names...),
		Extra: func(n *nodetest.Node) []nodetest.Run {
			tk := talk.New(talk.Config{Router: n.Router, Self: n.ID.Address, Contacts: n.DB.Contacts(),
				Stamps: &stamps.Checker{Spent: n.DB.Stamps()}, Nickname: nick, Bits: testBits})
			ms := messages.New(messages.Config{Router: n.Router, Identity: n.ID, DB: n.DB, Bits: testBits,
				Stamps: &stamps.Checker{Spent: n.DB.Stamps(), Policy: hashcash.Policy{Expiry: messages.StampExpiry}}})
			runs := []nodetest.Run{tk.Run, ms.Run}
			if web != nil {
				info := &node.InfoService{Router: n.Router, Base: node.Info{Version: node.Version, Address: n.ID.Address.String(), Nickname: nick}}
				web.cfg.Router = n.Router
				web.cfg.Functions = control.Functions(n.Router, n.DB.Contacts())
				runs = append(runs, info.Run, web.Run)
			}
			return runs
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return n
}

// chromium returns the path of a Chromium to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the browser test is not run with -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: install the Debian package chromium to run the browser test")
	return ""
}

// The page in a real browser: log in with the token, see the statistics,
// talk with another node's console, add and remove a contact, send a
// message to an offline node and watch it turn delivered when the node
// comes; a WebSocket from another origin is refused.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	web := New(Config{Listen: "127.0.0.1:0", TokenFile: filepath.Join(t.TempDir(), TokenFileName)})
	a := startNode(t, nil, "alice", web)
	base := "http://" + web.Addr()
	tok, err := web.Token()
	if err != nil {
		t.Fatal(err)
	}
	b := startNode(t, nil, "bob", nil)
	bob := attachConsole(t, b)

	ctx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 800))...)
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var consoleErrs []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			consoleErrs = append(consoleErrs, ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				consoleErrs = append(consoleErrs, strings.Join(args, " "))
			}
		}
	})
	shoot := screenshots(t)

	// Log in; the page connects and attaches.
	start := time.Now()
	if err := chromedp.Run(ctx, chromedp.Navigate(base+"/login?token="+tok), chromedp.WaitVisible(`#conn.up`)); err != nil {
		t.Fatalf("log in: %v", err)
	}
	loaded := time.Since(start)
	var navMS float64
	chromedp.Run(ctx, chromedp.Evaluate(`performance.getEntriesByType('navigation')[0].loadEventEnd`, &navMS))
	t.Logf("page: %d bytes; log in to attached %v, load event at %.0f ms", pageSize(t), loaded.Round(time.Millisecond), navMS)

	// Statistics.
	run(t, ctx, "statistics", chromedp.Click(`#tab-stats`), chromedp.WaitVisible(`#figures [data-fig="Peers"]`))
	shoot(ctx, "stats")

	// Talk with bob, whose console is on his node.
	run(t, ctx, "talk request", chromedp.Click(`#tab-talk`), chromedp.SendKeys(`#talk-peer`, b.Target()+kb.Enter))
	req := bob.wait(t, talkapi.KindRequest)
	if _, err := bob.call(talkapi.AcceptRequest{Talk: req.Talk}); err != nil {
		t.Fatalf("bob accepts: %v", err)
	}
	run(t, ctx, "talk open", chromedp.WaitEnabled(`#talk-line`), chromedp.SendKeys(`#talk-line`, "hello bob"+kb.Enter))
	if ev := bob.wait(t, talkapi.KindMsg); ev.Text != "hello bob" {
		t.Errorf("bob got %q", ev.Text)
	}
	if _, err := bob.call(talkapi.SendRequest{Talk: req.Talk, Text: "hello alice"}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "line from bob", chromedp.WaitVisible(`//ol[@id="talk-log"]/li[contains(., "hello alice")]`, chromedp.BySearch))
	shoot(ctx, "talk")

	// Contacts: add, see, remove.
	carol, _ := identity.Generate()
	run(t, ctx, "add contact", chromedp.Click(`#tab-contacts`), chromedp.SendKeys(`#ct-nick`, "carol"),
		chromedp.SendKeys(`#ct-addr`, carol.Address.String()+kb.Enter), chromedp.WaitVisible(`tr[data-nick="carol"]`))
	shoot(ctx, "contacts")
	run(t, ctx, "remove contact", chromedp.Click(`button[aria-label="Remove carol"]`), chromedp.WaitNotPresent(`tr[data-nick="carol"]`))

	// A message to dave, who is offline: it waits, then is delivered
	// once dave's node comes and connects.
	dave, _ := identity.Generate()
	run(t, ctx, "compose", chromedp.Click(`#tab-messages`), chromedp.Click(`#compose-open`),
		chromedp.SendKeys(`#c-to`, dave.Address.String()), chromedp.SendKeys(`#c-subject`, "Grüße"),
		chromedp.SendKeys(`#c-body`, "Hello, Dave.\nSee you."), chromedp.Click(`#compose button:not([type=button])`),
		chromedp.WaitVisible(`#msg-list .state[data-state]`))
	var state string
	run(t, ctx, "state", chromedp.AttributeValue(`#msg-list .state`, "data-state", &state, nil))
	if state == "" || state == "delivered" {
		t.Errorf("state of a message to an offline node: %q", state)
	}
	shoot(ctx, "messages")
	d := startNode(t, dave, "dave", nil, a.Target())
	if _, err := d.Call(ctx, dhtapi.Endpoint, dhtapi.JobRequest{Job: "bootstrap"}); err != nil {
		t.Fatalf("dave joins: %v", err)
	}
	run(t, ctx, "delivered", chromedp.WaitVisible(`#msg-list .state[data-state="delivered"]`))
	run(t, ctx, "read", chromedp.Click(`#msg-list button[data-id]`), chromedp.WaitVisible(`//pre[@id="msg-text"][contains(., "See you.")]`, chromedp.BySearch))

	mu.Lock()
	if len(consoleErrs) > 0 {
		t.Errorf("errors in the browser's console: %q", consoleErrs)
	}
	mu.Unlock()

	// A page of another origin (another port: same site, so the cookie
	// goes along) cannot open the WebSocket.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/evil.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprintf(w, `const ws = new WebSocket("ws://%s/ws"); ws.onopen = () => { document.title = "open"; }; ws.onerror = () => { document.title = "refused"; };`, web.Addr())
			return
		}
		fmt.Fprint(w, `<!doctype html><title>evil</title><script src="/evil.js"></script>`)
	}))
	defer evil.Close()
	var title string
	run(t, ctx, "cross-origin", chromedp.Navigate(evil.URL), chromedp.Poll(`document.title !== "evil"`, nil), chromedp.Title(&title))
	if title != "refused" {
		t.Errorf("cross-origin WebSocket: %s", title)
	}
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	for i, a := range actions {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Run(actx, a)
		cancel()
		if err != nil {
			what = fmt.Sprintf("%s, step %d", what, i+1)
			failPage(t, ctx, what, err)
		}
	}
}

// failPage ends the test, showing the page's text.
func failPage(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	{
		var body string
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		chromedp.Run(bctx, chromedp.Evaluate(`document.body.innerText`, &body))
		t.Fatalf("%s: %v\npage: %.2000s", what, err, body)
	}
}

// screenshots returns a function that saves the view at 1280 and 360 px
// wide to docs/screenshots when PHPCHAT_SCREENSHOTS=1.
func screenshots(t *testing.T) func(ctx context.Context, view string) {
	if os.Getenv("PHPCHAT_SCREENSHOTS") != "1" {
		return func(context.Context, string) {}
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, view string) {
		for _, w := range []int64{1280, 360} {
			var png []byte
			run(t, ctx, "screenshot", chromedp.EmulateViewport(w, 800), chromedp.Sleep(200*time.Millisecond), chromedp.CaptureScreenshot(&png))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", view, w)), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		run(t, ctx, "viewport", chromedp.EmulateViewport(1280, 800))
	}
}

// pageSize is the bytes of the embedded page.
func pageSize(t *testing.T) int {
	n := 0
	fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := staticFS.ReadFile(p)
			n += len(b)
		}
		return nil
	})
	return n
}

// console is a terminal console attached to a node through its router.
type console struct {
	n   *nodetest.Node
	sub *router.Subscription
}

func attachConsole(t *testing.T, n *nodetest.Node) *console {
	t.Helper()
	c := &console{n: n, sub: n.Router.Subscribe(talkapi.TopicEvents, 256)}
	t.Cleanup(c.sub.Unsubscribe)
	if _, err := c.call(talkapi.AttachRequest{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *console) call(req any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.n.Call(ctx, talkapi.Endpoint, req)
}

// wait returns the next event of the kind.
func (c *console) wait(t *testing.T, kind string) talkapi.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-c.sub.C():
			if ev, ok := ev.(talkapi.Event); ok && ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event at the console", kind)
		}
	}
}
