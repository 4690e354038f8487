package router

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

type echoReq struct{ N int }

// serveEcho answers every request with N+1 until the test ends.
func serveEcho(t testing.TB, r *Router, id string) *Endpoint {
	t.Helper()
	e, err := r.Register(id, 64)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Serve(ctx, func(_ context.Context, m *Msg) (any, error) {
			req, ok := m.Body.(echoReq)
			if !ok {
				return nil, fmt.Errorf("unexpected %T", m.Body)
			}
			return req.N + 1, nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done; e.Close() })
	return e
}

func TestCallReply(t *testing.T) {
	r := New()
	serveEcho(t, r, "kernel")
	c, _ := r.Register("console", 1)
	v, err := c.Call(context.Background(), "kernel", echoReq{41})
	if err != nil || v != 42 {
		t.Fatalf("Call = %v, %v; want 42", v, err)
	}
	if _, err := c.Call(context.Background(), "kernel", "bad"); err == nil {
		t.Fatal("handler error not returned to caller")
	}
}

func TestCallMissingEndpointFailsAtOnce(t *testing.T) {
	r := New()
	c, _ := r.Register("console", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := c.Call(ctx, "nobody", echoReq{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("err = %v, want ErrNoEndpoint", err)
	}
	if err := c.Send(context.Background(), "nobody", 1); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("Send err = %v, want ErrNoEndpoint", err)
	}
}

func TestDuplicateRegister(t *testing.T) {
	r := New()
	if _, err := r.Register("a", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register("a", 1); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
}

// A call pending on an endpoint that stops fails with ErrClosed, not hangs.
func TestPendingCallFailsWhenEndpointCloses(t *testing.T) {
	r := New()
	slow, _ := r.Register("slow", 4) // never serves
	c, _ := r.Register("console", 1)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "slow", echoReq{})
		errc <- err
	}()
	// Wait for the request to arrive, then close without answering.
	m := <-slow.Inbox()
	if !m.IsRequest() {
		t.Fatal("call delivered as one-way message")
	}
	slow.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call not failed after endpoint closed")
	}
	if _, err := c.Call(context.Background(), "slow", echoReq{}); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("call after close: %v, want ErrNoEndpoint", err)
	}
}

// Requests queued in a closing endpoint's inbox are failed too.
func TestQueuedRequestsFailedOnClose(t *testing.T) {
	r := New()
	slow, _ := r.Register("slow", 8)
	c, _ := r.Register("console", 1)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Call(context.Background(), "slow", echoReq{})
			errs <- err
		}()
	}
	for len(slow.inbox) < 8 {
		runtime.Gosched()
	}
	slow.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	}
}

func TestFullInboxFailsFast(t *testing.T) {
	r := New()
	r.Register("busy", 1)
	c, _ := r.Register("kernel", 1)
	if err := c.Send(context.Background(), "busy", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), "busy", 2); !errors.Is(err, ErrInboxFull) {
		t.Fatalf("Send to full inbox: %v, want ErrInboxFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := c.Call(ctx, "busy", echoReq{}); !errors.Is(err, ErrInboxFull) {
		t.Fatalf("Call to full inbox: %v, want ErrInboxFull", err)
	}
}

func TestCallDeadline(t *testing.T) {
	r := New()
	r.Register("mute", 1)
	c, _ := r.Register("kernel", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, "mute", echoReq{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	r := New()
	srv, _ := r.Register("srv", 16)
	c, _ := r.Register("c", 1)
	seen := map[uint64]bool{}
	for i := 0; i < 10; i++ {
		go c.Call(context.Background(), "srv", echoReq{})
		m := <-srv.Inbox()
		if m.From != "c" || m.RID == 0 || seen[m.RID] {
			t.Fatalf("message from %q rid %d (seen %v)", m.From, m.RID, seen[m.RID])
		}
		seen[m.RID] = true
		m.Reply(nil, nil)
	}
}

func TestManyConcurrentCallers(t *testing.T) {
	r := New()
	serveEcho(t, r, "kernel")
	const callers, calls = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		c, err := r.Register(fmt.Sprintf("c%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < calls; j++ {
				n := i*calls + j
				v, err := c.Call(context.Background(), "kernel", echoReq{n})
				if errors.Is(err, ErrInboxFull) {
					j-- // the server is behind: the caller retries
					runtime.Gosched()
					continue
				}
				if err != nil || v != n+1 {
					errs <- fmt.Errorf("caller %d call %d: %v, %v", i, j, v, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPublishNeverBlocksAndCountsDrops(t *testing.T) {
	r := New()
	fast := r.Subscribe("console", 100)
	slow := r.Subscribe("console", 1)
	other := r.Subscribe("other", 1)
	for i := 0; i < 10; i++ {
		r.Publish("console", i)
	}
	if len(fast.C()) != 10 {
		t.Errorf("fast subscriber got %d events, want 10", len(fast.C()))
	}
	if got := <-slow.C(); got != 0 {
		t.Errorf("slow subscriber got %v first, want 0", got)
	}
	if slow.Dropped() != 9 || r.Stats().Dropped != 9 {
		t.Errorf("dropped = %d (router %d), want 9", slow.Dropped(), r.Stats().Dropped)
	}
	if len(other.C()) != 0 {
		t.Error("event leaked to another topic")
	}
	slow.Unsubscribe()
	if _, ok := <-slow.C(); ok {
		t.Error("channel not closed by Unsubscribe")
	}
	if n := r.Publish("console", "x"); n != 1 {
		t.Errorf("Publish reached %d subscribers, want 1", n)
	}
}

func TestConcurrentPublishSubscribe(t *testing.T) {
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r.Publish("t", 1)
				runtime.Gosched()
			}
		}()
	}
	for i := 0; i < 50; i++ {
		s := r.Subscribe("t", 2)
		<-s.C()
		s.Unsubscribe()
	}
	cancel()
	wg.Wait()
}

func BenchmarkCall(b *testing.B) {
	r := New()
	serveEcho(b, r, "kernel")
	c, _ := r.Register("c", 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.Call(ctx, "kernel", echoReq{i}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkPublish reports the rate of Publish, and how many of those
// events a subscriber that only receives them got: the rest were dropped,
// as the router drops events for a full subscriber rather than wait.
func BenchmarkPublish(b *testing.B) {
	r := New()
	s := r.Subscribe("events", 1024)
	done := make(chan int)
	go func() {
		n := 0
		for range s.C() {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r.Publish("events", i)
	}
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	s.Unsubscribe()
	delivered := <-done
	b.ReportMetric(float64(b.N)/elapsed, "events/s")
	b.ReportMetric(float64(delivered)/elapsed, "delivered/s")
	b.ReportMetric(100*float64(s.Dropped())/float64(b.N), "%dropped")
}

func TestCallAs(t *testing.T) {
	r := New()
	serveEcho(t, r, "kernel")
	c, _ := r.Register("console", 1)
	n, err := CallAs[int](context.Background(), c, "kernel", echoReq{1})
	if err != nil || n != 2 {
		t.Fatalf("CallAs[int] = %v, %v", n, err)
	}
	if _, err := CallAs[string](context.Background(), c, "kernel", echoReq{1}); err == nil {
		t.Fatal("a reply of the wrong type was accepted")
	}
}

// A service stops working on a request whose caller has given up: the
// context Serve hands the handler ends with the caller's.
func TestServeCancelsWhenCallerGivesUp(t *testing.T) {
	r := New()
	svc, _ := r.Register("svc", 4)
	caller, _ := r.Register("caller", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started, stopped := make(chan struct{}), make(chan error, 1)
	go svc.Serve(ctx, func(ctx context.Context, m *Msg) (any, error) {
		go func() {
			close(started)
			<-ctx.Done() // long work, until the caller gives up
			stopped <- ctx.Err()
			m.Reply(nil, ctx.Err())
		}()
		return nil, ErrDeferred
	})
	cctx, ccancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := caller.Call(cctx, "svc", 1); done <- err }()
	<-started
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want context.Canceled", err)
	}
	select {
	case err := <-stopped:
		if err == nil {
			t.Fatal("handler context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler kept working after its caller gave up")
	}
}

// A request whose caller gave up while it waited in the inbox is not
// handled at all.
func TestServeSkipsAbandonedRequests(t *testing.T) {
	r := New()
	svc, _ := r.Register("svc", 4)
	caller, _ := r.Register("caller", 1)
	cctx, ccancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := caller.Call(cctx, "svc", 1); done <- err }()
	for len(svc.inbox) == 0 {
		runtime.Gosched()
	}
	ccancel()
	<-done
	ctx, cancel := context.WithCancel(context.Background())
	handled := make(chan struct{}, 1)
	go svc.Serve(ctx, func(ctx context.Context, m *Msg) (any, error) {
		if m.Body == 1 {
			handled <- struct{}{}
		}
		return nil, nil
	})
	if _, err := caller.Call(context.Background(), "svc", 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-handled:
		t.Fatal("an abandoned request was handled")
	default:
	}
}
