package cron

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/cronapi"
)

func start(t *testing.T, jobs ...Job) *router.Endpoint {
	t.Helper()
	r := router.New()
	s := &Scheduler{Router: r, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Jobs: jobs}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("scheduler: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, _ := r.Register("console", 1)
	return c
}

func TestJobsRunPeriodically(t *testing.T) {
	ticks := make(chan struct{}, 100)
	start(t, Job{Name: "ping", Every: 10 * time.Millisecond, Jitter: 0.2, Run: func(context.Context) error {
		select {
		case ticks <- struct{}{}:
		default:
		}
		return nil
	}})
	for i := 0; i < 5; i++ {
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatalf("job ran %d times in 5 s, want 5 at a 10 ms period", i)
		}
	}
}

func TestRunCycleNow(t *testing.T) {
	var order []string
	job := func(name string, err error) Job {
		return Job{Name: name, Every: time.Hour, Run: func(context.Context) error {
			order = append(order, name) // jobs run one at a time: no race
			return err
		}}
	}
	c := start(t, job("refresh", nil), job("ping", errors.New("no peers")), job("save", nil))
	v, err := c.Call(context.Background(), cronapi.Endpoint, cronapi.RunRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res := v.([]cronapi.Result)
	if len(res) != 3 || res[0].Job != "refresh" || res[1].Error != "no peers" || res[2].Error != "" {
		t.Fatalf("cycle results %+v", res)
	}
	v, err = c.Call(context.Background(), cronapi.Endpoint, cronapi.RunRequest{Only: []string{"ping"}})
	if err != nil || len(v.([]cronapi.Result)) != 1 {
		t.Fatalf("ping only: %v, %v", v, err)
	}
	if _, err := c.Call(context.Background(), cronapi.Endpoint, cronapi.RunRequest{Only: []string{"reboot"}}); err == nil {
		t.Fatal("unknown job accepted")
	}
	v, err = c.Call(context.Background(), cronapi.Endpoint, cronapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := v.([]cronapi.Status)
	if st[1].Job != "ping" || st[1].Runs != 2 || st[1].LastErr != "no peers" || st[1].LastRun.IsZero() || st[0].Runs != 1 {
		t.Fatalf("status %+v", st)
	}
	if st[0].NextRun.IsZero() {
		t.Fatal("no next run planned")
	}
}

func TestPanickingJobIsReported(t *testing.T) {
	c := start(t, Job{Name: "bad", Every: time.Hour, Run: func(context.Context) error { panic("boom") }})
	v, err := c.Call(context.Background(), cronapi.Endpoint, cronapi.RunRequest{})
	if err != nil || v.([]cronapi.Result)[0].Error != "panic: boom" {
		t.Fatalf("got %v, %v", v, err)
	}
}

func TestBadJobRefused(t *testing.T) {
	s := &Scheduler{Router: router.New(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Jobs: []Job{{Name: "x", Run: func(context.Context) error { return nil }}}}
	if err := s.Run(context.Background(), func() {}); err == nil {
		t.Fatal("job without a period accepted")
	}
}

func TestNoJobs(t *testing.T) {
	c := start(t)
	v, err := c.Call(context.Background(), cronapi.Endpoint, cronapi.RunRequest{})
	if err != nil || len(v.([]cronapi.Result)) != 0 {
		t.Fatalf("cycle without jobs: %v, %v", v, err)
	}
}

func TestJitterBounds(t *testing.T) {
	for i := 0; i < 1000; i++ {
		d := jitter(time.Second, 0.1)
		if d < -100*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("jitter(1s, 0.1) = %v", d)
		}
	}
}

// However many runs, each stays within its jitter of its grid point: the
// jitter of one run does not move the next.
func TestScheduleDoesNotDrift(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := schedule{grid: start, every: time.Minute, jitter: 0.2}
	last := start
	for n := 1; n <= 100000; n++ {
		at := p.next(last) // each run on time
		grid := start.Add(time.Duration(n) * time.Minute)
		if d := at.Sub(grid); d < -12*time.Second || d > 12*time.Second {
			t.Fatalf("run %d is %v from its grid point %v", n, d, grid)
		}
		if !at.After(last) {
			t.Fatalf("run %d at %v, not after run %d at %v", n, at, n-1, last)
		}
		last = at
	}
}

// After the machine sleeps, the missed runs are skipped, and the next one
// is on the old grid.
func TestScheduleSkipsMissedRuns(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := schedule{grid: start, every: time.Minute}
	woke := start.Add(90*time.Minute + 20*time.Second)
	if got, want := p.next(woke), start.Add(91*time.Minute); !got.Equal(want) {
		t.Fatalf("after a 90 min sleep the next run is at %v, want %v", got, want)
	}
}
