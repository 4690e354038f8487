// Package minerapi is the miner pool's contract on the router: the
// requests it serves and their replies.
package minerapi

import (
	"errors"
	"time"
)

// Endpoint is the pool's router id.
const Endpoint = "miner"

// Priority orders requests: interactive ones (a talk request a person
// waits on) are served before background ones (relaying, lookups).
type Priority int

const (
	Interactive Priority = iota
	Background
)

// MintRequest asks the pool for a stamp of at least Bits bits on Resource.
// The reply is a MintResult or an error.
type MintRequest struct {
	Resource string
	Bits     int
	Priority Priority
	// Deadline, if not zero, abandons the request then (queued or minting).
	Deadline time.Time
}

// MintResult is the reply to a MintRequest.
type MintResult struct {
	Stamp string
	Took  time.Duration
}

// StatsRequest asks the pool for its Stats.
type StatsRequest struct{}

// Stats describe the pool for `info`.
type Stats struct {
	Workers     int     `json:"workers"`
	HashRate    float64 `json:"hash_rate"`    // hashes per second over the last interval
	Queued      int     `json:"queued"`       // requests waiting
	Minting     bool    `json:"minting"`      // a stamp is being minted
	Minted      uint64  `json:"minted"`       // stamps minted since start
	Refused     uint64  `json:"refused"`      // requests refused because a queue was full
	TotalHashes uint64  `json:"total_hashes"` // hashes computed since start
}

// ErrQueueFull is returned for a request that finds its queue full.
var ErrQueueFull = errors.New("miner queue full")
