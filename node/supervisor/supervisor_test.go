package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func newSup() *Supervisor {
	return &Supervisor{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff:      time.Millisecond,
		MaxBackoff:      4 * time.Millisecond,
		ShutdownTimeout: time.Second,
	}
}

// serve is a subsystem body that reports ready and waits for the end.
func serve(ctx context.Context, ready func()) error {
	ready()
	<-ctx.Done()
	return nil
}

func TestReadyThenCleanStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- newSup().Run(ctx, []Subsystem{
			{Name: "a", Required: true, Run: serve},
			{Name: "b", Run: serve},
		}, func() { close(ready) })
	}()
	<-ready
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}

func TestOptionalSubsystemDoesNotHoldReadiness(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- newSup().Run(ctx, []Subsystem{
			{Name: "kernel", Required: true, Run: serve},
			{Name: "imap", Run: func(ctx context.Context, _ func()) error { return errors.New("port in use") }},
		}, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("Run returned %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestOptionalSubsystemIsRestarted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	third := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- newSup().Run(ctx, []Subsystem{
			{Name: "kernel", Required: true, Run: serve},
			{Name: "imap", Run: func(ctx context.Context, ready func()) error {
				if runs.Add(1) == 3 {
					close(third)
					return serve(ctx, ready)
				}
				if runs.Load() == 2 {
					panic("bug")
				}
				return errors.New("port in use")
			}},
		}, nil)
	}()
	select {
	case <-third:
	case err := <-errc:
		t.Fatalf("Run returned %v while an optional subsystem failed", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestRequiredFailureStopsAll(t *testing.T) {
	stopped := make(chan struct{})
	err := newSup().Run(context.Background(), []Subsystem{
		{Name: "kernel", Required: true, Run: func(ctx context.Context, ready func()) error {
			return errors.New("listen: address in use")
		}},
		{Name: "cron", Run: func(ctx context.Context, ready func()) error {
			<-ctx.Done()
			close(stopped)
			return nil
		}},
	}, func() { t.Error("ready reported though the kernel failed") })
	if err == nil || err.Error() != "kernel: listen: address in use" {
		t.Fatalf("Run = %v, want the kernel's error", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("other subsystems still running after Run returned")
	}
}

func TestShutdownTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	defer close(block)
	s := newSup()
	s.ShutdownTimeout = 10 * time.Millisecond
	cancel()
	err := s.Run(ctx, []Subsystem{{Name: "stuck", Required: true, Run: func(context.Context, func()) error {
		<-block
		return nil
	}}}, nil)
	if !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("Notify without socket: %v", err)
	}
}
