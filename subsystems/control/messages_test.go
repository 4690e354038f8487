package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// fakeMessages is an offline-message service that keeps what it is sent.
type fakeMessages struct {
	mu   sync.Mutex
	sent []msgapi.SendRequest
}

func (f *fakeMessages) handle(_ context.Context, m *router.Msg) (any, error) {
	switch req := m.Body.(type) {
	case msgapi.SendRequest:
		if string(req.Content) == "refuse me" {
			return nil, fmt.Errorf("%w: refused", msgapi.ErrBadInput)
		}
		f.mu.Lock()
		f.sent = append(f.sent, req)
		f.mu.Unlock()
		return "00112233445566778899aabbccddeeff", nil
	case msgapi.ListRequest:
		return []msgapi.Summary{{ID: "00112233445566778899aabbccddeeff", Box: "outbox", State: msgapi.StateQueued}}, nil
	case msgapi.ReadRequest:
		if req.ID != "0011" {
			return nil, fmt.Errorf("message %q: %w", req.ID, msgapi.ErrNoMessage)
		}
		return msgapi.Message{Summary: msgapi.Summary{ID: "00112233445566778899aabbccddeeff"}, Content: []byte("Subject: hi\r\n\r\nbody")}, nil
	case msgapi.DeleteRequest:
		return nil, nil
	case talkapi.AttachRequest:
		return talkapi.Attached{}, nil
	}
	return nil, fmt.Errorf("unexpected %T", m.Body)
}

// startMessagesNode serves a control socket with every function, a fake
// offline-message service and a fake talk service (for console.attach).
func startMessagesNode(t *testing.T) (path string, r *router.Router, fake *fakeMessages, book *store.Contacts) {
	t.Helper()
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r = router.New()
	fake = &fakeMessages{}
	path = filepath.Join(t.TempDir(), "control.sock")
	srv := &Server{Path: path, Router: r, Logger: slog.New(slog.DiscardHandler), Handlers: Functions(r, db.Contacts())}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, id := range []string{msgapi.Endpoint, talkapi.Endpoint} {
		ep, err := r.Register(id, 16)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ep.Serve(ctx, fake.handle) })
	}
	ready := make(chan struct{})
	wg.Go(func() {
		if err := srv.Run(ctx, func() { close(ready) }); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	<-ready
	return path, r, fake, db.Contacts()
}

func TestMessageFunctions(t *testing.T) {
	path, _, fake, book := startMessagesNode(t)
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := book.Add(store.Contact{Address: id.Address.String(), Nickname: "Bob"}); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A nickname (in any case) is resolved through the address book, and
	// the content travels as base64.
	content := []byte("Subject: é\r\n\r\n\x00binary\xff")
	var sent MsgID
	if err := c.Call(ctx, "msg.send", MsgSend{To: "bob", Content: content}, &sent, nil); err != nil {
		t.Fatalf("msg.send: %v", err)
	}
	if sent.ID != "00112233445566778899aabbccddeeff" {
		t.Errorf("msg.send answered %+v", sent)
	}
	if len(fake.sent) != 1 || fake.sent[0].To != id.Address || string(fake.sent[0].Content) != string(content) {
		t.Fatalf("the service got %+v", fake.sent)
	}
	if err := c.Call(ctx, "msg.send", MsgSend{To: id.Address.String(), Content: []byte("x")}, nil, nil); err != nil || len(fake.sent) != 2 {
		t.Fatalf("msg.send to an address: %v", err)
	}

	var list []msgapi.Summary
	if err := c.Call(ctx, "msg.list", nil, &list, nil); err != nil || len(list) != 1 || list[0].State != msgapi.StateQueued {
		t.Fatalf("msg.list: %v, %+v", err, list)
	}
	var m msgapi.Message
	if err := c.Call(ctx, "msg.read", MsgID{ID: "0011"}, &m, nil); err != nil || string(m.Content) != "Subject: hi\r\n\r\nbody" {
		t.Fatalf("msg.read: %v, %+v", err, m)
	}
	if err := c.Call(ctx, "msg.delete", MsgID{ID: "0011"}, nil, nil); err != nil {
		t.Fatalf("msg.delete: %v", err)
	}

	// Input errors are CodeInvalid, with a text that says what is wrong.
	for _, tc := range []struct {
		name string
		data any
		want string
	}{
		{"msg.send", MsgSend{To: "nobody", Content: []byte("x")}, `"nobody" is neither an address nor a nickname`},
		{"msg.send", MsgSend{To: "bob", Content: []byte("refuse me")}, "bad input"},
		{"msg.send", nil, "needs a recipient"},
		{"msg.read", nil, "a message id is needed"},
		{"msg.send", map[string]any{"to": "bob", "content": "not base64!"}, "bad request data"},
		{"msg.read", MsgID{ID: "ffff"}, `message "ffff": no such message`},
		{"msg.read", map[string]any{"id": "0011", "extra": 1}, "unknown field"},
	} {
		err := c.Call(ctx, tc.name, tc.data, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeInvalid || !strings.Contains(re.Text, tc.want) {
			t.Errorf("%s %v: %v, want code %d and %q", tc.name, tc.data, err, CodeInvalid, tc.want)
		}
	}
}

// console.attach streams the offline-message service's events.
func TestAttachStreamsMailEvents(t *testing.T) {
	path, r, _, _ := startMessagesNode(t)
	ctx := testContext(t)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	events := c.Events()
	if _, err := c.Send("console.attach", nil); err != nil {
		t.Fatal(err)
	}
	next := func() Frame {
		t.Helper()
		select {
		case f := <-events:
			return f
		case <-ctx.Done():
			t.Fatal("no frame from console.attach")
		}
		return Frame{}
	}
	if f := next(); f.Name != talkapi.EventFrame || !strings.Contains(string(f.Data), talkapi.KindAttached) {
		t.Fatalf("first frame %s %s, want the attached event", f.Name, f.Data)
	}
	// The subscription is made before the attached event is sent.
	r.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindMail, ID: "0011", From: "pc1x", Subject: "hello"})
	f := next()
	var ev msgapi.Event
	if f.Name != MsgEventFrame || json.Unmarshal(f.Data, &ev) != nil || ev.Kind != msgapi.KindMail || ev.Subject != "hello" || ev.From != "pc1x" {
		t.Fatalf("frame %s %s, want the mail event", f.Name, f.Data)
	}
}
