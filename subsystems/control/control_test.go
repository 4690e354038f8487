package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
)

// startNode serves a control socket with the node handlers and an info
// service, and returns the socket's path. Handlers in more are served too.
func startNode(t *testing.T, more ...map[string]Handler) string {
	t.Helper()
	r := router.New()
	path := filepath.Join(t.TempDir(), "control.sock")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{Path: path, Router: r, Logger: logger, Handlers: NodeHandlers()}
	srv.Handlers["fail"] = func(context.Context, *Conn, json.RawMessage) (any, error) {
		return nil, errors.New("it broke")
	}
	for _, m := range more {
		maps.Copy(srv.Handlers, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{}, 2)
	done := make(chan error, 2)
	info := &node.InfoService{Router: r, Logger: logger, Base: node.Info{Address: "pc1test"}}
	go func() { done <- info.Run(ctx, func() { ready <- struct{}{} }) }()
	go func() { done <- srv.Run(ctx, func() { ready <- struct{}{} }) }()
	<-ready
	<-ready
	t.Cleanup(func() {
		cancel()
		for i := 0; i < 2; i++ {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return path
}

func TestInfoOverSocket(t *testing.T) {
	path := startNode(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var in node.Info
	if err := c.Call(context.Background(), "info", nil, &in, nil); err != nil {
		t.Fatal(err)
	}
	if !in.Running || in.Address != "pc1test" || in.PID != os.Getpid() {
		t.Fatalf("info = %+v", in)
	}
	err = c.Call(context.Background(), "fail", nil, nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeFailed || re.Text != "it broke" {
		t.Fatalf("fail: %v", err)
	}
}

// Bad frames get error frames, and the connection keeps working.
func TestBadFramesKeepConnection(t *testing.T) {
	path := startNode(t)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	expect := func(what string, wantName string, wantCode int) {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: read: %v", what, err)
		}
		var f Frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("%s: reply %q: %v", what, line, err)
		}
		if f.Name != wantName {
			t.Fatalf("%s: reply %q, want name %q", what, line, wantName)
		}
		if wantCode != 0 {
			var e ErrorData
			json.Unmarshal(f.Data, &e)
			if e.Code != wantCode {
				t.Fatalf("%s: reply %q, want code %d", what, line, wantCode)
			}
		}
	}
	send := func(s string) {
		if _, err := io.WriteString(nc, s); err != nil {
			t.Fatal(err)
		}
	}
	send("this is not json\n")
	expect("not JSON", "error", CodeNotJSON)
	send(`{"name":"ping","rid":1}` + "\n")
	expect("ping after garbage", "ping", 0)
	send(`{"name":"format_disk","rid":2}` + "\n")
	expect("unknown function", "error", CodeUnknown)
	send(`{"rid":3}` + "\n")
	expect("no name", "error", CodeBadEnvelope)
	send(`{"name":7}` + "\n")
	expect("name not a string", "error", CodeBadEnvelope)
	send(`{"name":"ping","data":"` + strings.Repeat("x", MaxFrame) + `"}` + "\n")
	expect("oversize", "error", CodeTooLarge)
	send(`{"name":"info","rid":4}` + "\n")
	expect("info after oversize", "info", 0)
}

func TestDialWithoutNode(t *testing.T) {
	_, err := Dial(context.Background(), filepath.Join(t.TempDir(), "control.sock"))
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial = %v, want ErrNotRunning", err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	srv := &Server{Path: "/" + strings.Repeat("d", MaxPath) + "/control.sock"}
	if _, err := srv.Listen(); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("Listen = %v, want an error naming --data-dir", err)
	}
}

func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nafter\npartial"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	if l, err := ReadLine(br, 10); err != nil || string(l) != "short" {
		t.Fatalf("first: %q, %v", l, err)
	}
	if _, err := ReadLine(br, 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("long: %v, want ErrFrameTooLarge", err)
	}
	if l, err := ReadLine(br, 10); err != nil || string(l) != "after" {
		t.Fatalf("after long: %q, %v", l, err)
	}
	if _, err := ReadLine(br, 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("partial: %v, want ErrUnexpectedEOF", err)
	}
}

// A handler serving a client for as long as it stays (as console.attach
// does) learns at once that the client went away: it need not wait for a
// write to the dead socket to fail.
func TestConnContextEndsWhenClientLeaves(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan struct{})
	path := startNode(t, map[string]Handler{
		"follow": func(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
			close(started)
			<-c.Context().Done()
			close(ended)
			return nil, nil
		},
	})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(nc, `{"name":"follow","rid":1}`+"\n"); err != nil {
		t.Fatal(err)
	}
	<-started
	nc.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's connection context did not end when the client left")
	}
}

// A client that shuts down its writing side still gets the replies to
// the requests it sent, even those answered after the server has seen it
// stop sending.
func TestRepliesAfterHalfClose(t *testing.T) {
	halfClosed := make(chan struct{})
	path := startNode(t, map[string]Handler{
		// watch returns when the connection's context ends: when the
		// server has seen the client stop sending.
		"watch": func(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
			<-c.Context().Done()
			close(halfClosed)
			return "seen", nil
		},
		"slow": func(ctx context.Context, _ *Conn, _ json.RawMessage) (any, error) {
			select {
			case <-halfClosed:
			case <-ctx.Done():
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return "done", nil
		},
	})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, `{"name":"watch","rid":1}`+"\n"+`{"name":"slow","rid":2}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if err := nc.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	replies := make(map[uint64]string)
	br := bufio.NewReader(nc)
	for range 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no reply after closing the writing side: %v", err)
		}
		var f Frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("reply %q: %v", line, err)
		}
		replies[f.RID] = line
	}
	var f Frame
	if err := json.Unmarshal([]byte(replies[2]), &f); err != nil || f.Name != "slow" || string(f.Data) != `"done"` {
		t.Fatalf("reply to slow %q, %v; want slow \"done\"", replies[2], err)
	}
}

// A client over MaxClients gets an error frame (9050) and is closed; the
// clients served keep working, and one that leaves makes room.
func TestMaxClients(t *testing.T) {
	r := router.New()
	path := filepath.Join(t.TempDir(), "control.sock")
	srv := &Server{Path: path, Router: r, Logger: slog.New(slog.DiscardHandler), Handlers: NodeHandlers(), MaxClients: 2}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	<-ready
	defer func() { cancel(); <-done }()

	var clients []*Client
	for range 2 {
		c, err := Dial(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Call(ctx, "ping", nil, nil, nil); err != nil {
			t.Fatalf("ping within the cap: %v", err)
		}
		clients = append(clients, c)
	}
	refused := func() bool {
		t.Helper()
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, `{"name":"ping","rid":1}`+"\n")
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil {
			t.Fatalf("no frame: %v", err)
		}
		var f Frame
		var e ErrorData
		if json.Unmarshal([]byte(line), &f) != nil || (f.Name == "error" && json.Unmarshal(f.Data, &e) != nil) {
			t.Fatalf("frame %q", line)
		}
		if f.Name == "ping" {
			return false
		}
		if f.Name != "error" || e.Code != CodeBusy {
			t.Fatalf("over the cap: %q, want error %d", line, CodeBusy)
		}
		// Closed: the end of the stream, or a reset, for the ping sent
		// was never read.
		if n, err := nc.Read(make([]byte, 1)); err == nil {
			t.Fatalf("over the cap: connection not closed: read %d bytes", n)
		}
		return true
	}
	if !refused() {
		t.Fatal("a third client was served with MaxClients 2")
	}
	if err := clients[0].Call(ctx, "ping", nil, nil, nil); err != nil {
		t.Fatalf("ping after a refusal: %v", err)
	}
	clients[1].Close()
	// The server sees the client leave when its read ends: try until it
	// has (each try is refused or served, never left waiting).
	for refused() {
	}
}

// contacts.add with a malformed address or nickname is 9000 (invalid
// data), not 9060 (failed).
func TestContactAddInvalid(t *testing.T) {
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	path := startNode(t, ContactHandlers(db.Contacts()))
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, req := range []ContactAdd{
		{Address: "pc1nonsense", Nickname: "bob"},
		{Address: "", Nickname: "bob"},
	} {
		err := c.Call(context.Background(), "contacts.add", req, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeInvalid {
			t.Errorf("contacts.add %+v: %v, want code %d", req, err, CodeInvalid)
		}
	}
}
