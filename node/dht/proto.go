package dht

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Message names of the DHT, as the original protocol's.
const (
	NameFindNode  = "node_find"  // data: FindNode; answered by node_found
	NameFoundNode = "node_found" // data: FoundNode
)

// Purpose is the hashcash purpose of node_find in a node's policy.
const Purpose = "node_find"

// StampExpiry is how long a node_find stamp is valid after its date.
// Stamps are minted for each request, so a short validity keeps the
// spent-stamp store, which must hold every stamp until it expires, small
// under a flood of cheap requests.
const StampExpiry = 10 * time.Minute

// FindNode is the data of node_find: a request for the nodes the receiver
// knows closest to Target, paid with a hashcash stamp.
type FindNode struct {
	Target string `json:"target"` // 64 hex digits
	Stamp  string `json:"stamp"`
}

// FoundNode is the data of node_found.
type FoundNode struct {
	Nodes []Record `json:"nodes"`
}

// A Record is a node as node_found carries it: its address (the key) and
// where to reach it. A record is only a hint where to dial: a node enters
// a table after its own handshake has proved its key.
type Record struct {
	Address identity.Address `json:"address"`
	Addrs   []string         `json:"addrs"`
}

// MaxAddrLen is the longest network address in a record.
const MaxAddrLen = 64

// ErrInvalidRecord is wrapped by the errors of Validate.
var ErrInvalidRecord = errors.New("dht: invalid node_found")

// ParseTarget parses the target of node_find.
func ParseTarget(s string) (identity.ID, error) {
	var id identity.ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("dht: target has %d characters, want %d hex digits", len(s), 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("dht: target: %w", err)
	}
	return id, nil
}

// Validate checks a node_found reply from the node at from: at most K
// records, each with a valid address other than from's, at most MaxAddrs
// network addresses of the form ip:port, no address twice. A reply that
// breaks any rule is refused whole: a node that lies once is not believed
// in part. Of a valid reply, nodes keeps only the network addresses that
// are not over-represented (see MaxRecordsPerIP).
func (f *FoundNode) Validate(from identity.Address) error {
	if len(f.Nodes) > K {
		return fmt.Errorf("%w: %d records, at most %d", ErrInvalidRecord, len(f.Nodes), K)
	}
	seen := make(map[identity.Address]bool, len(f.Nodes))
	for i, r := range f.Nodes {
		if r.Address.IsZero() {
			return fmt.Errorf("%w: record %d has no address", ErrInvalidRecord, i)
		}
		if seen[r.Address] {
			return fmt.Errorf("%w: record %d repeats an address", ErrInvalidRecord, i)
		}
		seen[r.Address] = true
		if len(r.Addrs) == 0 || len(r.Addrs) > MaxAddrs {
			return fmt.Errorf("%w: record %d has %d network addresses (1-%d)", ErrInvalidRecord, i, len(r.Addrs), MaxAddrs)
		}
		for _, a := range r.Addrs {
			if len(a) > MaxAddrLen {
				return fmt.Errorf("%w: record %d: network address over %d bytes", ErrInvalidRecord, i, MaxAddrLen)
			}
			ap, err := netip.ParseAddrPort(a)
			if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
				return fmt.Errorf("%w: record %d: %q is not ip:port", ErrInvalidRecord, i, a)
			}
		}
	}
	return nil
}

// MaxRecordsPerIP is the most records of one node_found reply that this
// node takes at one IP address (an IPv6 /64 counting as one address): each
// record may cost a connection, and a reply that lists many identities, or
// many ports, of one host would make this node flood it with handshakes.
// Loopback and private addresses are exempt, as from the table's limits
// (MaxPerIP): a local test network runs many nodes on one address.
const MaxRecordsPerIP = 2

// nodes returns the records as Nodes, without the asking node itself, and
// without the network addresses that are over-represented in the reply: an
// ip:port already given for an earlier record (or twice in one), or an IP
// address that MaxRecordsPerIP earlier records have. A record left without
// an address is dropped.
func (f *FoundNode) nodes(self identity.ID) []Node {
	out := make([]Node, 0, len(f.Nodes))
	seen := make(map[string]bool)       // ip:port
	perIP := make(map[netip.Prefix]int) // records per IP (or /64)
	for _, r := range f.Nodes {
		if r.Address.ID() == self {
			continue
		}
		var addrs []string
		var ips []netip.Prefix // of this record
		for _, a := range r.Addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				continue
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			key := ap.String()
			if seen[key] {
				continue
			}
			if ip, limited := hostPrefix(ap.Addr()); limited && !slices.Contains(ips, ip) {
				if perIP[ip] >= MaxRecordsPerIP {
					continue
				}
				perIP[ip]++
				ips = append(ips, ip)
			}
			seen[key] = true
			addrs = append(addrs, a)
		}
		if len(addrs) > 0 {
			out = append(out, Node{Address: r.Address, Addrs: addrs})
		}
	}
	return out
}

// hostPrefix returns the prefix that stands for a's host in the limits per
// IP: a itself, or its /64 for IPv6. It returns false for an address
// exempt from the limits.
func hostPrefix(a netip.Addr) (netip.Prefix, bool) {
	if exempt(a) {
		return netip.Prefix{}, false
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p, true
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// records returns nodes as Records with only their ip:port addresses,
// leaving out nodes without one: a reply carries nothing its receiver
// would refuse.
func records(nodes []Node) []Record {
	out := make([]Record, 0, len(nodes))
	for _, n := range nodes {
		var addrs []string
		for _, a := range n.Addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() != 0 && len(a) <= MaxAddrLen && len(addrs) < MaxAddrs {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			out = append(out, Record{Address: n.Address, Addrs: addrs})
		}
	}
	return out
}

// StampResource is the hashcash resource of a node_find sent to the node
// at to: binding the stamp to the receiver keeps it from being spent at
// any other node.
func StampResource(to identity.Address) string { return "node_find/" + to.String() }

// scope orders the reach of an IP address: loopback < private (RFC 1918,
// unique local, link-local) < public.
func scope(a netip.Addr) int {
	switch {
	case a.IsLoopback():
		return 0
	case a.IsPrivate() || a.IsLinkLocalUnicast():
		return 1
	}
	return 2
}

// Reachable drops from the records the network addresses of a narrower
// scope than from, the address the reply came from, and then the records
// left without one: a peer on the internet must not make this node dial
// into its own host or private network.
func Reachable(nodes []Node, from netip.Addr) []Node {
	out := nodes[:0]
	for _, n := range nodes {
		var addrs []string
		for _, a := range n.Addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil && scope(ap.Addr().Unmap()) >= scope(from.Unmap()) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			n.Addrs = addrs
			out = append(out, n)
		}
	}
	return out
}
