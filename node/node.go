// Package node holds what the whole node shares: its version and the
// description of a node that `info` prints. Its sub-packages are the parts:
// identity, router, supervisor, and the kernel.
package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
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
	// The mail gateways: their user, and their listen addresses (null
	// when off).
	MailUser string  `json:"mail_user"`
	IMAP     *string `json:"imap"`
	SMTP     *string `json:"smtp"`
	// Web is the web console's URL (null when off).
	Web     *string `json:"web"`
	Running bool    `json:"running"`

	// Set only while the node runs.
	PID       int        `json:"pid,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Uptime    float64    `json:"uptime_seconds,omitempty"`
	MemoryRSS int64      `json:"memory_rss,omitempty"` // bytes, resident
	// The free space of the data dir's file system, and the reserve below
	// which the node refuses work that writes (DiskLow).
	DiskFree    *uint64 `json:"disk_free,omitempty"` // bytes
	DiskReserve uint64  `json:"disk_reserve,omitempty"`
	DiskLow     bool    `json:"disk_low,omitempty"`

	// Filled by the subsystems' contributors while the node runs.
	Peers       *int         `json:"peers,omitempty"`
	PeersIn     int          `json:"peers_in,omitempty"`
	PeersOut    int          `json:"peers_out,omitempty"`
	TrafficIn   *uint64      `json:"traffic_in,omitempty"`  // bytes received from peers
	TrafficOut  *uint64      `json:"traffic_out,omitempty"` // bytes sent to peers
	Connections []ConnInfo   `json:"connections,omitempty"`
	Targets     []TargetInfo `json:"connect,omitempty"` // the peers of --connect
	DHTNodes    *int         `json:"dht_nodes,omitempty"`
	Buckets     *int         `json:"buckets,omitempty"`
	DHTNote     string       `json:"dht_note,omitempty"` // such as "no peers and no bootstrap nodes"
	Miner       *MinerInfo   `json:"miner,omitempty"`
	Cron        []JobInfo    `json:"cron,omitempty"`
	// The offline messages; its fields are at the top level of the JSON.
	*MessagesInfo
}

// MessagesInfo counts the offline messages.
type MessagesInfo struct {
	InboxTotal      int   `json:"inbox_total"`
	InboxUnread     int   `json:"inbox_unread"`
	OutboxQueued    int   `json:"outbox_queued"` // queued, minting or sent, not yet delivered
	OutboxDelivered int   `json:"outbox_delivered"`
	RelayStored     int   `json:"relay_stored"` // envelopes held for others
	RelayBytes      int64 `json:"relay_bytes"`
}

// ConnInfo is one peer connection, for `info -c`.
type ConnInfo struct {
	Address    string    `json:"address"`
	Remote     string    `json:"remote"`
	Inbound    bool      `json:"inbound"`
	Status     string    `json:"status"` // one letter, as the original's info -c
	TrafficIn  uint64    `json:"traffic_in"`
	TrafficOut uint64    `json:"traffic_out"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
}

// TargetInfo is the state of a peer the node keeps connected (--connect).
type TargetInfo struct {
	Target      string    `json:"target"`
	Connected   bool      `json:"connected"`
	Address     string    `json:"address,omitempty"` // the peer's, while connected
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// MinerInfo describes the miner pool.
type MinerInfo struct {
	Workers  int     `json:"workers"`
	HashRate float64 `json:"hash_rate"` // hashes per second
	Queued   int     `json:"queued"`
	Minted   uint64  `json:"minted"`
}

// JobInfo describes one scheduled job.
type JobInfo struct {
	Job      string    `json:"job"`
	LastRun  time.Time `json:"last_run,omitzero"`
	LastTook float64   `json:"last_took_seconds"`
	LastErr  string    `json:"last_error,omitempty"`
	Runs     uint64    `json:"runs"`
}

// A Contributor adds a subsystem's figures to the running node's Info,
// asking the subsystem over the router through ep. It should not take
// long; an error is logged and leaves the figures out.
type Contributor func(ctx context.Context, ep *router.Endpoint, in *Info) error

// InfoRequest asks the info service for the running node's Info.
type InfoRequest struct{}

// InfoEndpoint is the router id of the info service.
const InfoEndpoint = "node"

// InfoService answers InfoRequests on the router: the node's static Info,
// completed with the running process's figures and the contributors'.
type InfoService struct {
	Router       *router.Router
	Logger       *slog.Logger
	Base         Info
	Contributors []Contributor
}

// Run serves until ctx ends. Each request is answered on a goroutine of
// its own, so a slow subsystem delays only that answer.
func (s *InfoService) Run(ctx context.Context, ready func()) error {
	ep, err := s.Router.Register(InfoEndpoint, 64)
	if err != nil {
		return err
	}
	defer ep.Close()
	started := time.Now()
	var wg sync.WaitGroup
	defer wg.Wait()
	ready()
	return ep.Serve(ctx, func(ctx context.Context, m *router.Msg) (any, error) {
		if _, ok := m.Body.(InfoRequest); !ok {
			return nil, fmt.Errorf("info service: unexpected %T", m.Body)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := s.Base
			in.Running = true
			in.PID = os.Getpid()
			in.Started = &started
			in.Uptime = time.Since(started).Seconds()
			in.MemoryRSS = residentMemory()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			for _, c := range s.Contributors {
				if err := c(cctx, ep, &in); err != nil {
					s.Logger.Debug("info: contributor failed", "err", err)
				}
			}
			m.Reply(in, nil)
		}()
		return nil, router.ErrDeferred
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
