package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeNode listens on a socket in a temporary directory and runs serve on
// the first connection; it returns the socket's path. serve must return
// when the client closes the connection.
func fakeNode(t *testing.T, serve func(br *bufio.Reader, nc net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		serve(bufio.NewReader(nc), nc)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return path
}

// readRequest reads one frame the client sent.
func readRequest(t *testing.T, br *bufio.Reader) (Frame, error) {
	line, err := ReadLine(br, MaxFrame)
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	if err := json.Unmarshal(line, &f); err != nil {
		t.Errorf("client sent %q: %v", line, err)
	}
	return f, err
}

// testContext is a deadline for a test that would otherwise hang.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientCallsAndEventsInterleaved(t *testing.T) {
	const calls = 8
	path := fakeNode(t, func(br *bufio.Reader, nc net.Conn) {
		// Wait for every call (so they must be in flight at once), then
		// answer them last first, each after an event.
		var reqs []Frame
		for len(reqs) < calls+1 {
			f, err := readRequest(t, br)
			if err != nil {
				t.Errorf("fake node: %v", err)
				return
			}
			if f.Name == "console.attach" {
				writeFrame(nc, "error", f.RID, ErrorData{Code: CodeFailed, Text: "no talk here", Name: f.Name})
			}
			reqs = append(reqs, f)
		}
		for i := len(reqs) - 1; i >= 0; i-- {
			if reqs[i].Name != "echo" {
				continue
			}
			writeFrame(nc, "talk.event", 0, i)
			writeFrame(nc, "echo", reqs[i].RID, reqs[i].Data)
		}
		readRequest(t, br) // until the client closes
	})
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
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got string
			want := fmt.Sprintf("call %d", i)
			if err := c.Call(ctx, "echo", want, &got, nil); err != nil || got != want {
				t.Errorf("echo %q = %q, %v", want, got, err)
			}
		}()
	}

	f := <-events
	var re *RemoteError
	if err := DecodeError(f); f.Name != "error" || !errors.As(err, &re) || re.Text != "no talk here" {
		t.Errorf("first frame on Events: %+v (%v), want console.attach's error", f, err)
	}
	for range calls {
		f, ok := <-events
		if !ok {
			t.Fatal("Events closed while the node still sends")
		}
		if f.Name != "talk.event" || f.RID != 0 {
			t.Errorf("event %+v, want talk.event with rid 0", f)
		}
	}
	wg.Wait()
}

func TestClientCallFailsWhenNodeGoes(t *testing.T) {
	path := fakeNode(t, func(br *bufio.Reader, nc net.Conn) {
		if _, err := readRequest(t, br); err != nil {
			t.Errorf("fake node: %v", err)
		}
		writeFrame(nc, "talk.event", 0, "before")
		// Gone without answering.
	})
	ctx := testContext(t)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	events := c.Events()
	errc := make(chan error, 1)
	go func() { errc <- c.Call(ctx, "info", nil, nil, nil) }()
	if f := <-events; f.Name != "talk.event" {
		t.Errorf("event %+v", f)
	}
	if _, ok := <-events; ok {
		t.Error("Events not closed when the node went away")
	}
	err = <-errc
	if err == nil || ctx.Err() != nil {
		t.Fatalf("call while the node goes away = %v (context: %v), want a failure before the deadline", err, ctx.Err())
	}
	if err := c.Call(ctx, "info", nil, nil, nil); err == nil {
		t.Error("call after the node went away succeeded")
	}
}

func TestClientCloseWithUnreadEvents(t *testing.T) {
	sent := make(chan struct{})
	path := fakeNode(t, func(br *bufio.Reader, nc net.Conn) {
		if _, err := readRequest(t, br); err != nil {
			t.Errorf("fake node: %v", err)
			return
		}
		for range 3 { // the client takes the first and waits to hand over the next
			writeFrame(nc, "talk.event", 0, nil)
		}
		close(sent)
		readRequest(t, br) // until the client closes
	})
	ctx := testContext(t)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c.Events()
	if _, err := c.Send("console.attach", nil); err != nil {
		t.Fatal(err)
	}
	<-sent
	errc := make(chan error, 1)
	go func() { errc <- c.Call(ctx, "info", nil, nil, nil) }()
	c.Close() // must not wait for the events to be received
	if err := <-errc; err == nil || ctx.Err() != nil {
		t.Errorf("call on a closed client = %v (context: %v), want a failure before the deadline", err, ctx.Err())
	}
}

func TestClientCallPassesEvents(t *testing.T) {
	path := fakeNode(t, func(br *bufio.Reader, nc net.Conn) {
		f, err := readRequest(t, br)
		if err != nil {
			t.Errorf("fake node: %v", err)
			return
		}
		writeFrame(nc, "talk.event", 0, "hello")
		writeFrame(nc, f.Name, f.RID, "reply")
		readRequest(t, br)
	})
	ctx := testContext(t)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var events []string
	var reply string
	err = c.Call(ctx, "info", nil, &reply, func(f Frame) { events = append(events, string(f.Data)) })
	if err != nil || reply != "reply" {
		t.Fatalf("call = %q, %v", reply, err)
	}
	if len(events) != 1 || events[0] != `"hello"` {
		t.Errorf("onEvent got %q, want the event sent before the reply", events)
	}
}
