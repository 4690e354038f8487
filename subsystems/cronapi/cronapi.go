// Package cronapi is the scheduler's contract on the router: the requests
// it serves and their replies.
package cronapi

import "time"

// Endpoint is the scheduler's router id.
const Endpoint = "cron"

// RunRequest asks the scheduler to run jobs now and waits for them: the
// jobs named in Only, or every job (one full cycle) when Only is empty.
// The reply is a []Result.
type RunRequest struct{ Only []string }

// Result is the outcome of one run of a job.
type Result struct {
	Job   string        `json:"job"`
	Took  time.Duration `json:"took_ns"`
	Error string        `json:"error,omitempty"`
}

// StatusRequest asks for the jobs' Status; the reply is a []Status.
type StatusRequest struct{}

// Status describes a job for `info`.
type Status struct {
	Job      string        `json:"job"`
	Every    time.Duration `json:"every_ns"`
	Runs     uint64        `json:"runs"`
	LastRun  time.Time     `json:"last_run,omitzero"`
	LastTook time.Duration `json:"last_took_ns"`
	LastErr  string        `json:"last_error,omitempty"`
	NextRun  time.Time     `json:"next_run,omitzero"`
}
