package dht

import (
	"fmt"
	"slices"
	"testing"
)

// dialCount returns how many connections a lookup would try for the
// nodes: one per network address.
func dialCount(nodes []Node) int {
	n := 0
	for _, nd := range nodes {
		n += len(nd.Addrs)
	}
	return n
}

// A forged reply of K records, each listing one address four times, must
// not make this node dial that address K×4 times: it dials it once.
func TestReplyWithOneAddressRepeatedIsDialledOnce(t *testing.T) {
	var f FoundNode
	for range K {
		f.Nodes = append(f.Nodes, Record{Address: newAddr(t), Addrs: []string{"198.51.100.7:25000", "198.51.100.7:25000", "[::ffff:198.51.100.7]:25000", "198.51.100.7:25000"}})
	}
	if err := f.Validate(newAddr(t)); err != nil {
		t.Fatal(err)
	}
	got := f.nodes(newAddr(t).ID())
	if len(got) != 1 || dialCount(got) != 1 || got[0].Address != f.Nodes[0].Address {
		t.Fatalf("reply of %d records at one ip:port gives %d nodes, %d dials; want the first record, one dial", K, len(got), dialCount(got))
	}
}

// A reply listing many identities at one host, or one IPv6 /64, yields
// MaxRecordsPerIP of them; the other records are kept.
func TestReplyLimitsRecordsPerIP(t *testing.T) {
	var f FoundNode
	for i := range 8 {
		f.Nodes = append(f.Nodes, Record{Address: newAddr(t), Addrs: []string{fmt.Sprintf("198.51.100.7:%d", 25000+i)}})
		f.Nodes = append(f.Nodes, Record{Address: newAddr(t), Addrs: []string{fmt.Sprintf("[2001:db8::%x]:25000", i+1)}})
	}
	other := Record{Address: newAddr(t), Addrs: []string{"203.0.113.1:25000", "198.51.100.7:1"}}
	f.Nodes = append(f.Nodes, other)
	if err := f.Validate(newAddr(t)); err != nil {
		t.Fatal(err)
	}
	got := f.nodes(newAddr(t).ID())
	if len(got) != 2*MaxRecordsPerIP+1 {
		t.Fatalf("got %d nodes, want %d per host and the other one", len(got), MaxRecordsPerIP)
	}
	last := got[len(got)-1]
	if last.Address != other.Address || !slices.Equal(last.Addrs, []string{"203.0.113.1:25000"}) {
		t.Fatalf("record with an address at a full IP: %v, want only its other address", last.Addrs)
	}
}

// On a local test network every node listens on one address: a reply
// listing them all is kept whole, and only a repeated ip:port dropped.
func TestReplyKeepsLocalNodes(t *testing.T) {
	var f FoundNode
	for i := range 10 {
		f.Nodes = append(f.Nodes, Record{Address: newAddr(t), Addrs: []string{fmt.Sprintf("127.0.0.1:%d", 25000+i)}})
	}
	f.Nodes = append(f.Nodes, Record{Address: newAddr(t), Addrs: []string{"127.0.0.1:25000"}})
	if got := f.nodes(newAddr(t).ID()); len(got) != 10 {
		t.Fatalf("10 local nodes and a repeated one: got %d nodes, want 10", len(got))
	}
}
