package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// testServer is a web console on loopback serving the real function table
// with a fake talk service (for console.attach).
type testServer struct {
	*Server
	r     *router.Router
	token string
	base  string // http://127.0.0.1:port
	// slept records the delays asked for wrong tokens.
	mu    sync.Mutex
	slept []time.Duration
}

func startServer(t testing.TB, change func(*Config)) *testServer {
	t.Helper()
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := router.New()
	fns := control.Functions(r, db.Contacts())
	fns["test.fail"] = func(context.Context, *control.Conn, json.RawMessage) (any, error) {
		return nil, &control.CodeError{Code: control.CodeInvalid, Err: errors.New("no good")}
	}
	cfg := Config{Router: r, Listen: "127.0.0.1:0", Functions: fns, TokenFile: filepath.Join(t.TempDir(), TokenFileName)}
	if change != nil {
		change(&cfg)
	}
	ts := &testServer{Server: New(cfg), r: r}
	ts.sleep = func(_ context.Context, d time.Duration) {
		ts.mu.Lock()
		ts.slept = append(ts.slept, d)
		ts.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	ep, err := r.Register(talkapi.Endpoint, 64)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		ep.Serve(ctx, func(context.Context, *router.Msg) (any, error) {
			return talkapi.Attached{State: talkapi.State{Nickname: "me"}}, nil
		})
	})
	ready := make(chan struct{})
	wg.Go(func() {
		if err := ts.Run(ctx, func() { close(ready) }); err != nil {
			t.Errorf("run: %v", err)
			close(ready)
		}
	})
	<-ready
	ts.token, err = ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	ts.base = "http://" + ts.Addr()
	return ts
}

// login returns a client holding a session cookie.
func (ts *testServer) login(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	resp, err := cl.Get(ts.base + "/login?token=" + ts.token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %s", resp.Status)
	}
	return cl
}

// dial opens a WebSocket with cl's cookie and the given Origin.
func (ts *testServer) dial(t testing.TB, cl *http.Client, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.base, "http")+"/ws", &websocket.DialOptions{HTTPClient: cl, HTTPHeader: h})
	if err == nil {
		c.SetReadLimit(4 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func (ts *testServer) mustDial(t testing.TB) *websocket.Conn {
	t.Helper()
	c, _, err := ts.dial(t, ts.login(t), ts.base)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func write(t testing.TB, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func read(t testing.TB, c *websocket.Conn) control.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f control.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return f
}

func errorCode(t testing.TB, f control.Frame) int {
	t.Helper()
	if f.Name != "error" {
		t.Fatalf("got %s frame %s, want an error", f.Name, f.Data)
	}
	var e control.ErrorData
	json.Unmarshal(f.Data, &e)
	return e.Code
}

func TestLogin(t *testing.T) {
	ts := startServer(t, nil)
	for _, path := range []string{"/", "/app.js", "/channel.js", "/style.css"} {
		resp, err := http.Get(ts.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a cookie: %s, want 401", path, resp.Status)
		}
	}
	// A WebSocket without a cookie is refused before the upgrade.
	if _, resp, err := ts.dial(t, http.DefaultClient, ts.base); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket without a cookie: %v, %v", err, resp)
	}

	// Wrong tokens get 401, each answered after a longer delay.
	for range 3 {
		resp, err := http.Get(ts.base + "/login?token=" + strings.Repeat("0", 64))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("wrong token: %s, want 401", resp.Status)
		}
	}
	ts.mu.Lock()
	slept := ts.slept
	ts.mu.Unlock()
	if len(slept) != 3 || slept[0] <= 0 || slept[1] <= slept[0] || slept[2] <= slept[1] {
		t.Errorf("delays for wrong tokens: %v, want growing", slept)
	}

	cl := ts.login(t)
	u, _ := url.Parse(ts.base)
	cookies := cl.Jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != CookieName {
		t.Fatalf("cookies after login: %v", cookies)
	}
	resp, err := http.Get(ts.base + "/login?token=" + ts.token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	set := resp.Request.Response.Header.Get("Set-Cookie")
	if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") {
		t.Errorf("Set-Cookie %q, want HttpOnly and SameSite=Strict", set)
	}
	resp, err = cl.Get(ts.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("page with a cookie: %s, CSP %q", resp.Status, resp.Header.Get("Content-Security-Policy"))
	}

	// A forged cookie does not pass.
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, []*http.Cookie{{Name: CookieName, Value: cookies[0].Value[:20] + "AAAA" + cookies[0].Value[24:]}})
	resp, err = (&http.Client{Jar: jar}).Get(ts.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: %s, want 401", resp.Status)
	}

	// The token file is private, and kept.
	fi, err := os.Stat(ts.cfg.TokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v", fi.Mode(), err)
	}
	if again, err := LoadToken(ts.cfg.TokenFile); err != nil || again != ts.token {
		t.Errorf("token read again: %q, %v", again, err)
	}
}

func TestOriginAndHost(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.login(t)
	for _, origin := range []string{"", "http://evil.example", "http://localhost:1", "null"} {
		if _, resp, err := ts.dial(t, cl, origin); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: %v, %v; want 403", origin, err, resp)
		}
	}
	// DNS rebinding: a name that resolves here but is not ours.
	req, _ := http.NewRequest("GET", ts.base+"/", nil)
	req.Host = "rebind.example:80"
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %s, want 421", resp.Status)
	}
	if _, _, err := ts.dial(t, cl, ts.base); err != nil {
		t.Errorf("same origin: %v", err)
	}
	// A plain listener off loopback is refused.
	s := New(Config{Router: router.New(), Listen: "0.0.0.0:0", TokenFile: filepath.Join(t.TempDir(), "tok")})
	if err := s.Run(context.Background(), func() {}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("plain HTTP on 0.0.0.0: %v", err)
	}
}

func TestFrames(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	write(t, c, `{"name":"ping","rid":7}`)
	if f := read(t, c); f.Name != "ping" || f.RID != 7 || string(f.Data) != `"pong"` {
		t.Errorf("ping: %+v", f)
	}
	write(t, c, `{"name":"contacts.add","rid":8,"data":{"nickname":"x","address":"nope"}}`)
	if f := read(t, c); errorCode(t, f) != control.CodeInvalid || f.RID != 8 {
		t.Errorf("bad contact: %+v", f)
	}
	write(t, c, `{"name":"test.fail","rid":9}`)
	if f := read(t, c); errorCode(t, f) != control.CodeInvalid {
		t.Errorf("failing function: %+v", f)
	}
	write(t, c, `{"name":"no.such","rid":10}`)
	if f := read(t, c); errorCode(t, f) != control.CodeUnknown || f.RID != 10 {
		t.Errorf("unknown function: %+v", f)
	}
	write(t, c, `{not json`)
	if f := read(t, c); errorCode(t, f) != control.CodeNotJSON {
		t.Errorf("not JSON: %+v", f)
	}
	write(t, c, `[1,2]`)
	if f := read(t, c); errorCode(t, f) != control.CodeBadEnvelope {
		t.Errorf("not an envelope: %+v", f)
	}
	write(t, c, `{"name":"ping","rid":11,"data":"`+strings.Repeat("x", control.MaxFrame)+`"}`)
	if f := read(t, c); errorCode(t, f) != control.CodeTooLarge {
		t.Errorf("oversize: %+v", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Write(ctx, websocket.MessageBinary, []byte(`{"name":"ping"}`))
	if f := read(t, c); errorCode(t, f) != control.CodeNotJSON {
		t.Errorf("binary: %+v", f)
	}
	// The connection is still usable.
	write(t, c, `{"name":"ping","rid":12}`)
	if f := read(t, c); f.Name != "ping" || f.RID != 12 {
		t.Errorf("ping after errors: %+v", f)
	}
}

// attach attaches c as a console and reads the "attached" event.
func attach(t testing.TB, c *websocket.Conn) {
	t.Helper()
	write(t, c, `{"name":"console.attach","rid":1}`)
	if f := read(t, c); f.Name != talkapi.EventFrame || !strings.Contains(string(f.Data), `"attached"`) {
		t.Fatalf("attach: %+v", f)
	}
}

func TestEventsToEveryConsole(t *testing.T) {
	ts := startServer(t, nil)
	var cs []*websocket.Conn
	for range 3 {
		c := ts.mustDial(t)
		attach(t, c)
		cs = append(cs, c)
	}
	waitSubscribers(t, ts.r, 3)
	ts.r.Publish(talkapi.TopicEvents, talkapi.Event{Kind: talkapi.KindMsg, Talk: 1, Text: "hello"})
	ts.r.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindMail, ID: "ab", Subject: "hi"})
	for i, c := range cs {
		if f := read(t, c); f.Name != talkapi.EventFrame || !strings.Contains(string(f.Data), `"hello"`) {
			t.Errorf("console %d: %+v", i, f)
		}
		if f := read(t, c); f.Name != control.MsgEventFrame || !strings.Contains(string(f.Data), `"mail"`) {
			t.Errorf("console %d: %+v", i, f)
		}
	}
}

// waitSubscribers waits until n consoles subscribe to the talk events.
func waitSubscribers(t testing.TB, r *router.Router, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); r.Subscribers(msgapi.TopicEvents) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d consoles subscribed, want %d", r.Subscribers(msgapi.TopicEvents), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// endEvents publishes a "closed" event until seen is closed: a console
// whose events were being dropped may miss the first ones.
func endEvents(r *router.Router, seen <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r.Publish(talkapi.TopicEvents, talkapi.Event{Kind: talkapi.KindClosed, Talk: 1})
		select {
		case <-seen:
			return
		case <-tick.C:
		}
	}
}

// A console that does not read never holds up the node: its events are
// dropped and counted, and the others still get theirs.
func TestSlowConsole(t *testing.T) {
	ts := startServer(t, nil)
	slow, fast := ts.mustDial(t), ts.mustDial(t)
	attach(t, slow)
	attach(t, fast)
	waitSubscribers(t, ts.r, 2)
	const n = 20000
	text := strings.Repeat("x", 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			ts.r.Publish(talkapi.TopicEvents, talkapi.Event{Kind: talkapi.KindMsg, Talk: 1, Text: text, Count: i})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishing was held up by a console that does not read")
	}
	seen := make(chan struct{})
	go func() {
		defer close(seen)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			_, b, err := fast.Read(ctx)
			if err != nil {
				t.Errorf("fast console: %v", err)
				return
			}
			if strings.Contains(string(b), `"closed"`) {
				return
			}
		}
	}()
	endEvents(ts.r, seen)
	if ts.r.Stats().Dropped+ts.Stats().Dropped == 0 {
		t.Error("no event was dropped for the console that does not read")
	}
}

func TestMaxConns(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxConns = 2 })
	ts.mustDial(t)
	ts.mustDial(t)
	if _, resp, err := ts.dial(t, ts.login(t), ts.base); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third console: %v, %v; want 503", err, resp)
	}
}

// BenchmarkEvents measures the events per second delivered to 10 attached
// consoles, each event reaching all 10: the publisher sends bursts of 100
// and waits for every console to have them, so none is dropped.
func BenchmarkEvents(b *testing.B) {
	ts := startServer(b, nil)
	const consoles, burst = 10, 100
	var cs []*websocket.Conn
	for range consoles {
		c := ts.mustDial(b)
		attach(b, c)
		cs = append(cs, c)
	}
	waitSubscribers(b, ts.r, consoles)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make([]atomic.Int64, consoles)
	for i, c := range cs {
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
				got[i].Add(1)
			}
		}()
	}
	least := func() int64 {
		m := got[0].Load()
		for i := range got {
			m = min(m, got[i].Load())
		}
		return m
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		for j := i; j < min(i+burst, b.N); j++ {
			ts.r.Publish(talkapi.TopicEvents, talkapi.Event{Kind: talkapi.KindMsg, Talk: 1, Text: fmt.Sprint("line ", j)})
		}
		for deadline := time.Now().Add(10 * time.Second); least() < int64(min(i+burst, b.N)); {
			if time.Now().After(deadline) {
				b.Fatalf("consoles got %d of %d events", least(), min(i+burst, b.N))
			}
			runtime.Gosched()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(ts.Stats().Dropped+ts.r.Stats().Dropped), "dropped")
}
