package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/store"
)

// countUnserved adds the traffic of c, a closed connection that carries
// no session, to the totals.
func (k *Kernel) countUnserved(c *tls.Conn) {
	if cc, ok := c.NetConn().(*transport.CountingConn); ok {
		k.closedIn.Add(cc.BytesRead())
		k.closedOut.Add(cc.BytesWritten())
	}
}

// Peers describes the sessions.
func (k *Kernel) Peers() kernelapi.Peers {
	k.mu.Lock()
	// A session's traffic is in the totals or in live, never both.
	p := kernelapi.Peers{TrafficIn: k.closedIn.Load(), TrafficOut: k.closedOut.Load()}
	live := make([]*peer.Session, 0, len(k.live))
	for s := range k.live {
		live = append(live, s)
	}
	conns := make([]*conn, 0, len(k.sessions))
	for _, c := range k.sessions {
		conns = append(conns, c)
	}
	for _, t := range k.cfg.Connect {
		if ti := k.targets[t]; ti != nil {
			p.Targets = append(p.Targets, *ti)
		} else {
			p.Targets = append(p.Targets, node.TargetInfo{Target: t})
		}
	}
	k.mu.Unlock()
	if a := k.ListenAddr(); a != nil {
		p.Listen = a.String()
	}
	for _, s := range live {
		st := s.Stats()
		p.TrafficIn += st.BytesIn
		p.TrafficOut += st.BytesOut
	}
	for _, c := range conns {
		st := c.s.Stats()
		info := c.s.Info()
		status := "o"
		if c.inbound {
			status = "i"
			p.Inbound++
		} else {
			p.Outbound++
		}
		remote := ""
		if info.RemoteAddr != nil {
			remote = info.RemoteAddr.String()
		}
		p.Connections = append(p.Connections, node.ConnInfo{
			Address: c.s.Peer().String(), Remote: remote, Inbound: c.inbound, Status: status,
			TrafficIn: st.BytesIn, TrafficOut: st.BytesOut, FirstSeen: st.FirstSeen, LastSeen: st.LastSeen,
		})
	}
	return p
}

// trafficKey is the Meta name of the traffic totals.
const trafficKey = "traffic"

type traffic struct {
	In  uint64 `json:"in"`
	Out uint64 `json:"out"`
}

func (k *Kernel) loadTraffic() {
	if k.cfg.Meta == nil {
		return
	}
	var t traffic
	if err := k.cfg.Meta.Get(trafficKey, &t); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			k.log.Warn("kernel: traffic totals not loaded", "err", err)
		}
		return
	}
	k.closedIn.Store(t.In)
	k.closedOut.Store(t.Out)
}

// saveTraffic stores the totals; it runs once every session has ended.
func (k *Kernel) saveTraffic() {
	if k.cfg.Meta == nil {
		return
	}
	if err := k.cfg.Meta.Put(trafficKey, traffic{In: k.closedIn.Load(), Out: k.closedOut.Load()}); err != nil {
		k.log.Warn("kernel: traffic totals not saved", "err", err)
	}
}

// trafficSaveEvery is how often a running kernel saves its traffic totals
// when they have grown: a node killed without its final save loses at most
// this much of its traffic. A variable for tests.
var trafficSaveEvery = 30 * time.Second

// keepTrafficSaved saves the totals, live sessions' traffic included,
// every trafficSaveEvery while they grow, until ctx ends. (After a kill,
// the saved totals are what the sessions had carried by then.)
func (k *Kernel) keepTrafficSaved(ctx context.Context) {
	if k.cfg.Meta == nil {
		return
	}
	t := time.NewTicker(trafficSaveEvery)
	defer t.Stop()
	var saved traffic
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := k.Peers()
		now := traffic{In: p.TrafficIn, Out: p.TrafficOut}
		if now == saved {
			continue
		}
		switch err := k.cfg.Meta.Put(trafficKey, now); {
		case err == nil:
			saved, warned = now, false
		case errors.Is(err, store.ErrLowSpace):
			// Said by the disk watcher; saved once there is room.
		case !warned:
			warned = true
			k.log.Warn("kernel: traffic totals not saved", "err", err)
		}
	}
}
