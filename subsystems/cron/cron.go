// Package cron is the node's scheduler, the successor of PHPChat's cronjob
// process: it runs periodic jobs (refresh the DHT, ping quiet peers,
// re-bootstrap, save and compact the store, expire old records) on real
// timers with jitter, and runs a whole cycle, or chosen jobs, on request.
//
// Each job's runs are planned on a fixed grid (a first run, then one every
// period), not from when the last one finished, and each run's jitter is
// drawn anew around its grid point, so schedules never drift; jitter spreads
// nodes (and jobs) so that they do not all act at once. Jobs run one at a
// time.
package cron

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/cronapi"
)

// A Job is one periodic task.
type Job struct {
	Name  string
	Every time.Duration
	// Jitter is the fraction of Every by which a run may come early or late
	// (0.1: ±10%); at most 0.45, so that runs keep their order.
	Jitter float64
	Run    func(ctx context.Context) error
}

// Scheduler runs jobs.
type Scheduler struct {
	Router *router.Router
	Logger *slog.Logger
	Jobs   []Job
	// Now is the clock (time.Now when nil); tests may replace it.
	Now func() time.Time

	mu     sync.Mutex
	status map[string]*cronapi.Status
}

type work struct {
	jobs  []Job
	reply func([]cronapi.Result)
}

// Run schedules jobs until ctx ends.
func (s *Scheduler) Run(ctx context.Context, ready func()) error {
	for _, j := range s.Jobs {
		if j.Every <= 0 || j.Run == nil || j.Name == "" {
			return fmt.Errorf("cron: job %q needs a name, a period and a function", j.Name)
		}
	}
	now := s.now
	ep, err := s.Router.Register(cronapi.Endpoint, 16)
	if err != nil {
		return err
	}
	defer ep.Close()

	s.mu.Lock()
	s.status = make(map[string]*cronapi.Status, len(s.Jobs))
	next := make([]time.Time, len(s.Jobs))
	plans := make([]schedule, len(s.Jobs))
	for i, j := range s.Jobs {
		// The first runs are spread over the job's jitter (at least 5%)
		// of its period, so that jobs and nodes do not all start at once.
		next[i] = now().Add(time.Duration(rand.Float64() * float64(j.Every) * max(j.Jitter, 0.05)))
		plans[i] = schedule{grid: next[i], every: j.Every, jitter: j.Jitter}
		s.status[j.Name] = &cronapi.Status{Job: j.Name, Every: j.Every, NextRun: next[i]}
	}
	s.mu.Unlock()

	// One worker runs jobs one at a time, so the loop below keeps
	// answering requests while a job runs.
	queue := make(chan work, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case w := <-queue:
				res := make([]cronapi.Result, 0, len(w.jobs))
				for _, j := range w.jobs {
					res = append(res, s.runJob(ctx, j))
				}
				if w.reply != nil {
					w.reply(res)
				}
			}
		}
	}()
	defer wg.Wait()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ready()
	for {
		i := -1 // the job due first
		for k := range next {
			if i < 0 || next[k].Before(next[i]) {
				i = k
			}
		}
		var fire <-chan time.Time // nil, never ready, when there are no jobs
		if i >= 0 {
			timer.Reset(max(next[i].Sub(now()), 0))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-fire:
			j := s.Jobs[i]
			next[i] = plans[i].next(now())
			s.setNext(j.Name, next[i])
			select {
			case queue <- work{jobs: []Job{j}}:
			default:
				s.Logger.Warn("cron: job skipped, scheduler busy", "job", j.Name)
			}
		case m := <-ep.Inbox():
			s.handle(m, queue)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (s *Scheduler) handle(m *router.Msg, queue chan<- work) {
	switch req := m.Body.(type) {
	case cronapi.StatusRequest:
		m.Reply(s.Status(), nil)
	case cronapi.RunRequest:
		var jobs []Job
		if len(req.Only) == 0 {
			jobs = s.Jobs
		} else {
			for _, name := range req.Only {
				k := slices.IndexFunc(s.Jobs, func(j Job) bool { return j.Name == name })
				if k < 0 {
					m.Reply(nil, fmt.Errorf("cron: no job %q", name))
					return
				}
				jobs = append(jobs, s.Jobs[k])
			}
		}
		select {
		case queue <- work{jobs: jobs, reply: func(r []cronapi.Result) { m.Reply(r, nil) }}:
		default:
			m.Reply(nil, fmt.Errorf("cron: %w", router.ErrInboxFull))
		}
	default:
		m.Reply(nil, fmt.Errorf("cron: unexpected %T", m.Body))
	}
}

func (s *Scheduler) runJob(ctx context.Context, j Job) cronapi.Result {
	start := s.now()
	err := safeRun(ctx, j)
	took := s.now().Sub(start)
	r := cronapi.Result{Job: j.Name, Took: took}
	s.mu.Lock()
	st := s.status[j.Name]
	st.Runs++
	st.LastRun, st.LastTook, st.LastErr = start, took, ""
	if err != nil {
		r.Error = err.Error()
		st.LastErr = r.Error
	}
	s.mu.Unlock()
	if err != nil {
		s.Logger.Warn("cron: job failed", "job", j.Name, "took", took, "err", err)
	} else {
		s.Logger.Debug("cron: job ran", "job", j.Name, "took", took)
	}
	return r
}

func safeRun(ctx context.Context, j Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return j.Run(ctx)
}

// Status returns the jobs' status, in the order of Jobs.
func (s *Scheduler) Status() []cronapi.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cronapi.Status, 0, len(s.Jobs))
	for _, j := range s.Jobs {
		if st := s.status[j.Name]; st != nil {
			out = append(out, *st)
		}
	}
	return out
}

func (s *Scheduler) setNext(name string, t time.Time) {
	s.mu.Lock()
	s.status[name].NextRun = t
	s.mu.Unlock()
}

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// maxJitter keeps a run's jitter within half the gap to its neighbours'
// grid points, so that runs keep their order.
const maxJitter = 0.45

// schedule plans one job's runs. Run n is due at the grid point
// first + n·every, moved by a jitter drawn anew for each run: the runs never
// wander from the grid, however many there are.
type schedule struct {
	grid   time.Time // the grid point of the run last planned
	every  time.Duration
	jitter float64
}

// next plans the run after the one last planned. Grid points already past
// at now (the machine slept, or the job overran) are skipped, not run in a
// burst.
func (p *schedule) next(now time.Time) time.Time {
	p.grid = p.grid.Add(p.every)
	if p.grid.Before(now) {
		missed := now.Sub(p.grid)/p.every + 1
		p.grid = p.grid.Add(missed * p.every)
	}
	return p.grid.Add(jitter(p.every, p.jitter))
}

// jitter returns a random offset within ±f·every (f at most maxJitter).
func jitter(every time.Duration, f float64) time.Duration {
	f = min(f, maxJitter)
	if f <= 0 {
		return 0
	}
	return time.Duration(float64(every) * f * (2*rand.Float64() - 1))
}
