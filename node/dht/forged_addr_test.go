package dht

import (
	"context"
	"testing"
)

// A node_find to a node at an address from another node's reply that
// cannot be reached says nothing of the node: it stays in the table.
func TestFailedDialDoesNotEvict(t *testing.T) {
	a, _ := startLive(t, newID(t), t.TempDir())
	v, _ := startLive(t, newID(t), t.TempDir())
	a.svc.Table.Add(Node{Address: v.id.Address, Addrs: []string{v.k.ListenAddr().String()}})
	if _, ok := a.svc.Table.Get(v.id.Address); !ok {
		t.Fatal("setup")
	}
	forged := Node{Address: v.id.Address, Addrs: []string{"127.0.0.1:1"}}
	_, err := a.svc.FindNode(context.Background(), forged, a.id.Address.ID())
	if err == nil {
		t.Fatal("FindNode through an unreachable address succeeded")
	}
	if _, ok := a.svc.Table.Get(v.id.Address); !ok {
		t.Fatal("victim evicted from the table by a forged record")
	}
}
