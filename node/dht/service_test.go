package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

func TestFoundNodeValidate(t *testing.T) {
	from := newAddr(t)
	ok := Record{Address: newAddr(t), Addrs: []string{"192.0.2.1:25000"}}
	many := make([]Record, K+1)
	for i := range many {
		many[i] = Record{Address: newAddr(t), Addrs: []string{"192.0.2.1:25000"}}
	}
	for name, f := range map[string]FoundNode{
		"oversize":      {Nodes: many},
		"zero address":  {Nodes: []Record{ok, {Addrs: []string{"192.0.2.1:1"}}}},
		"repeated":      {Nodes: []Record{ok, ok}},
		"no addrs":      {Nodes: []Record{{Address: newAddr(t)}}},
		"hostname":      {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"evil.example:25000"}}}},
		"port zero":     {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"192.0.2.1:0"}}}},
		"unspecified":   {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"0.0.0.0:25000"}}}},
		"too many addr": {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.1:4", "192.0.2.1:5"}}}},
	} {
		if err := f.Validate(from); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRecord", name, err)
		}
	}
	good := FoundNode{Nodes: []Record{ok, {Address: newAddr(t), Addrs: []string{"[2001:db8::1]:25000"}}}}
	if err := good.Validate(from); err != nil {
		t.Fatalf("valid reply refused: %v", err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 63)} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}

func TestReachableKeepsScope(t *testing.T) {
	mk := func(addrs ...string) Node { return Node{Address: newAddr(t), Addrs: addrs} }
	nodes := func() []Node {
		return []Node{
			mk("127.0.0.1:25000"),
			mk("10.1.2.3:25000", "203.0.113.9:25000"),
			mk("192.168.1.5:25000"),
			mk("[fe80::1]:25000"),
			mk("198.51.100.7:25000"),
		}
	}
	public := Reachable(nodes(), netip.MustParseAddr("203.0.113.1"))
	if len(public) != 2 || public[0].Addrs[0] != "203.0.113.9:25000" || len(public[0].Addrs) != 1 {
		t.Fatalf("from a public peer: %+v, want only the public addresses", public)
	}
	private := Reachable(nodes(), netip.MustParseAddr("192.168.1.1"))
	if len(private) != 4 {
		t.Fatalf("from a private peer: %d nodes, want all but loopback", len(private))
	}
	if got := Reachable(nodes(), netip.MustParseAddr("127.0.0.1")); len(got) != 5 {
		t.Fatalf("from loopback: %d nodes, want all", len(got))
	}
}

// Only a failure that may mean the peer is gone makes it a suspect: not
// this node's own limits or minting, nor an error frame the peer sent.
func TestPeerFailed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("dial 192.0.2.1:25000: %w", errors.New("connection refused")), true},
		{fmt.Errorf("node_find to x: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("node_find to x: %w", errors.New("peer: peer quit")), true},
		{fmt.Errorf("connect x: %w: too many outbound sessions", kernelapi.ErrBusy), false},
		{fmt.Errorf("call: %w", router.ErrInboxFull), false},
		{fmt.Errorf("call: %w: send queue full", kernelapi.ErrBusy), false},
		{localError{fmt.Errorf("node_find to x: mint: %w", context.DeadlineExceeded)}, false},
		{fmt.Errorf("node_find to x: %w", &wire.ProtocolError{Code: wire.CodeBusy, Remote: true}), false},
		{fmt.Errorf("node_find to x: %w", &wire.ProtocolError{Code: wire.CodeBusy}), true},
	} {
		if got := peerFailed(tc.err); got != tc.want {
			t.Errorf("peerFailed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A node alone says so once; one with --connect peers is not alone.
func TestEmptyTableWarnedOnce(t *testing.T) {
	var buf strings.Builder
	s := &Service{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	s.warnEmpty()
	s.warnEmpty()
	if n := strings.Count(buf.String(), "routing table is empty"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, buf.String())
	}
	buf.Reset()
	s = &Service{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Connect: []string{"127.0.0.1:25000"}}
	s.warnEmpty()
	if buf.Len() != 0 {
		t.Fatalf("warned with --connect peers set:\n%s", buf.String())
	}
}

// Near says whether fewer than rank known nodes are closer to a target
// than this node.
func TestNear(t *testing.T) {
	self := newAddr(t)
	s := &Service{Table: NewTable(self)}
	var nodes []Node
	for i := range 300 {
		n := Node{Address: newAddr(t), Addrs: []string{fmt.Sprintf("127.0.0.1:%d", 1000+i)}}
		s.Table.Add(n)
		nodes = append(nodes, n)
	}
	if !s.Near(self.ID(), 8) {
		t.Fatal("a node is not near its own id")
	}
	known := s.Table.Nodes()
	for _, target := range nodes[:50] {
		closer := 0
		for _, n := range known {
			if Closer(target.ID(), n.ID(), s.Table.Self()) {
				closer++
			}
		}
		if got, want := s.Near(target.ID(), 8), closer < 8; got != want {
			t.Fatalf("Near = %v with %d known nodes closer, want %v", got, closer, want)
		}
	}
}
