package picker

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// RoundRobin cycles through the candidates, what a Kubernetes Service
// (kube-proxy) does; it is a baseline in the routing benchmark.
type RoundRobin struct{ next atomic.Uint64 }

// Pick implements Picker.
func (r *RoundRobin) Pick(_ *Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	if len(cands) == 0 {
		return nil, ErrNoEndpoint
	}
	return cands[(r.next.Add(1)-1)%uint64(len(cands))], nil
}

// Random picks uniformly at random; a baseline in the routing benchmark.
type Random struct{}

// Pick implements Picker.
func (Random) Pick(_ *Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	if len(cands) == 0 {
		return nil, ErrNoEndpoint
	}
	return cands[rand.IntN(len(cands))], nil
}
