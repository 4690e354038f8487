// Package dhtapi is the DHT service's contract on the router: the
// requests it serves and their replies.
package dhtapi

import "github.com/phpchat/phpchat-node/node/identity"

// Endpoint is the DHT service's router id.
const Endpoint = "dht"

// Requests the service serves. Each runs under its caller's context: its
// deadline bounds the work, and the work stops when the caller gives up.
type (
	// ReachRequest makes sure the node has a session with Address: it
	// keeps the one it has, or dials the addresses the routing table or a
	// lookup of the address gives. The reply is the session's
	// kernelapi.PeerInfo.
	ReachRequest struct{ Address identity.Address }
	// LookupRequest looks up the nodes closest to Target; the reply is a
	// LookupResult.
	LookupRequest struct{ Target identity.ID }
	// JobRequest runs one of the periodic jobs now (the cron's jobs):
	// "refresh", "ping", "bootstrap" (when the table is empty), "expire"
	// or "save". The reply is nil.
	JobRequest struct{ Job string }
	// StatsRequest asks for the table's figures; the reply is a Stats.
	StatsRequest struct{}
	// NearRequest asks whether this node is among the Rank nodes nearest
	// to Target that its table knows: whether fewer than Rank of them are
	// closer. The reply is a bool. Relays keep copies only for targets
	// they are near.
	NearRequest struct {
		Target identity.ID
		Rank   int
	}
)

// A Node is a node a lookup found: its address and where to dial it.
type Node struct {
	Address identity.Address
	Addrs   []string
}

// LookupResult is the reply to a LookupRequest: the closest nodes, the
// closest first.
type LookupResult struct {
	Nodes []Node
	// Rounds and Messages measure the lookup: the rounds of requests and
	// the node_find requests it sent.
	Rounds, Messages int
}

// Stats describe the routing table.
type Stats struct {
	Nodes, Buckets int
	Note           string // why the table is empty, when it is
}
