// Package node holds what the whole node shares: its version and the
// description of a node that `info` prints. Its sub-packages are the parts:
// identity, router, supervisor, and the kernel.
package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
)

// Version is the software version; release builds set it with
// -ldflags "-X github.com/phpchat/phpchat-node/node.Version=…".
var Version = "0.1.0-dev"

// Info describes the local node, as `info` prints it.
type Info struct {
	Version     string `json:"version"`
	Address     string `json:"address"`
	Fingerprint string `json:"fingerprint"`
	MailAddress string `json:"mail_address"`
	Nickname    string `json:"nickname"`
	Listen      string `json:"listen"`
	DataDir     string `json:"data_dir"`
	Running     bool   `json:"running"`

	// Set only while the node runs.
	PID       int        `json:"pid,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Uptime    float64    `json:"uptime_seconds,omitempty"`
	MemoryRSS int64      `json:"memory_rss,omitempty"` // bytes, resident
}

// InfoRequest asks the info service for the running node's Info.
type InfoRequest struct{}

// InfoEndpoint is the router id of the info service.
const InfoEndpoint = "node"

// ServeInfo answers InfoRequests on the router with base, completed with
// the running process's figures, until ctx ends.
func ServeInfo(ctx context.Context, r *router.Router, base Info, ready func()) error {
	ep, err := r.Register(InfoEndpoint, 64)
	if err != nil {
		return err
	}
	defer ep.Close()
	started := time.Now()
	ready()
	return ep.Serve(ctx, func(ctx context.Context, m *router.Msg) (any, error) {
		switch m.Body.(type) {
		case InfoRequest:
			in := base
			in.Running = true
			in.PID = os.Getpid()
			in.Started = &started
			in.Uptime = time.Since(started).Seconds()
			in.MemoryRSS = residentMemory()
			return in, nil
		default:
			return nil, fmt.Errorf("info service: unexpected %T", m.Body)
		}
	})
}

// residentMemory returns the process's resident set size in bytes, or 0
// where /proc does not tell it.
func residentMemory() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && string(f[0]) == "VmRSS:" && string(f[2]) == "kB" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
