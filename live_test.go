package main

import (
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node"
)

// The text view of info -c counts the talking connections and shows a
// closed connection as 'x' for a few seconds, as the original did.
func TestLiveLetters(t *testing.T) {
	var closed closedConns
	peers := 2
	at := time.Now()
	view := func(conns ...node.ConnInfo) string {
		t.Helper()
		s := sample{Info: node.Info{Peers: &peers, Connections: conns}}
		for _, c := range conns {
			if c.Status == "T" {
				s.Talking++
			}
		}
		closed.update(&s, at)
		var b strings.Builder
		writeLive(&b, s, 80)
		return b.String()
	}
	a := node.ConnInfo{Address: "pc1a", Status: "o"}
	b := node.ConnInfo{Address: "pc1b", Status: "T"}
	if v := view(a, b); !strings.Contains(v, "1 talking") || !strings.Contains(v, "Connections:  oT\n") {
		t.Fatalf("two connections, one talking:\n%s", v)
	}
	at = at.Add(time.Second)
	if v := view(b); !strings.Contains(v, "Connections:  Tx\n") {
		t.Fatalf("a connection just closed:\n%s", v)
	}
	at = at.Add(goneFor - time.Millisecond)
	if v := view(b); !strings.Contains(v, "Connections:  Tx\n") {
		t.Fatalf("a connection closed less than %s ago:\n%s", goneFor, v)
	}
	at = at.Add(time.Millisecond)
	if v := view(b); !strings.Contains(v, "Connections:  T\n") {
		t.Fatalf("a connection closed %s ago:\n%s", goneFor, v)
	}
	if v := view(a, b); !strings.Contains(v, "Connections:  oT\n") {
		t.Fatalf("a peer connected again:\n%s", v)
	}
}
