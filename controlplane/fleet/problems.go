package fleet

import (
	"cmp"
	"slices"
	"sync"
	"time"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// Problem is one proxy's current problem with one pool of its gateway
// (KeyReport.problems), as the status writer shows it.
type Problem struct {
	// Node is the proxy; Pool the pool's Backend resource name.
	Node, Pool      string
	Reason, Message string
}

// problems holds what each proxy last reported about its pools, per
// gateway and proxy. A proxy's set goes when its stream here ends, when
// it reports an empty one, or fleetv1.ProblemsTTL after it was last
// reported (a proxy connected to another replica, whose reports are
// relayed here, leaves without this replica seeing its stream end).
type problems struct {
	ttl time.Duration
	now func() time.Time
	// changed is called (outside the lock) when a gateway's problems
	// changed; nil: nobody is told.
	changed func()

	mu sync.Mutex
	gw map[string]map[string]*nodeProblems
}

type nodeProblems struct {
	at time.Time
	// stream is the local stream that reported them (0: relayed by a
	// peer), so the end of an older stream of the proxy does not drop
	// what a newer one reported.
	stream uint64
	list   []Problem
}

// set replaces node's problems with ps (nil: the report had none, nothing
// changes); stream is the local stream it came on, 0 when relayed.
func (p *problems) set(gw, node string, stream uint64, ps *fleetv1.PoolProblems) {
	if ps == nil {
		return
	}
	list := make([]Problem, 0, len(ps.GetProblems()))
	for _, pr := range ps.GetProblems() {
		list = append(list, Problem{Node: node, Pool: pr.GetPool(), Reason: pr.GetReason(), Message: pr.GetMessage()})
	}
	slices.SortFunc(list, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Reason, b.Reason))
	})
	p.mu.Lock()
	nodes := p.gw[gw]
	old := nodes[node]
	if stream == 0 && old != nil && old.stream != 0 {
		// The proxy is connected here: its own stream is the truth, a
		// relayed report is from an older stream to another replica.
		p.mu.Unlock()
		return
	}
	changed := (old == nil && len(list) > 0) || (old != nil && !slices.Equal(old.list, list))
	switch {
	case len(list) == 0 && nodes != nil:
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(p.gw, gw)
		}
	case len(list) > 0:
		if nodes == nil {
			nodes = map[string]*nodeProblems{}
			p.gw[gw] = nodes
		}
		nodes[node] = &nodeProblems{at: p.now(), stream: stream, list: list}
	}
	p.mu.Unlock()
	if changed && p.changed != nil {
		p.changed()
	}
}

// ended drops node's problems when stream reported them.
func (p *problems) ended(gw, node string, stream uint64) {
	p.mu.Lock()
	nodes := p.gw[gw]
	np := nodes[node]
	gone := np != nil && np.stream == stream
	if gone {
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(p.gw, gw)
		}
	}
	p.mu.Unlock()
	if gone && p.changed != nil {
		p.changed()
	}
}

// current returns the problems of every gateway ("<ns>/<name>") that any
// proxy reported within the TTL, sorted by pool, reason and proxy, and
// forgets older ones.
func (p *problems) current() map[string][]Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := p.now().Add(-p.ttl)
	out := make(map[string][]Problem, len(p.gw))
	for gw, nodes := range p.gw {
		var list []Problem
		for node, np := range nodes {
			if np.at.Before(cutoff) {
				delete(nodes, node)
				continue
			}
			list = append(list, np.list...)
		}
		if len(nodes) == 0 {
			delete(p.gw, gw)
		}
		if len(list) > 0 {
			slices.SortFunc(list, func(a, b Problem) int {
				return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Node, b.Node))
			})
			out[gw] = list
		}
	}
	return out
}

// countPoolProblems counts the distinct gateway, pool and reason triples
// of current's answer.
func countPoolProblems(byGateway map[string][]Problem) int {
	n := 0
	for _, ps := range byGateway {
		for i, p := range ps {
			// Sorted by pool and reason: count each pair's first.
			if i == 0 || ps[i-1].Pool != p.Pool || ps[i-1].Reason != p.Reason {
				n++
			}
		}
	}
	return n
}
