// Package picker chooses the endpoint that serves a request among a
// backend's ready endpoints: LeastInFlight for Services, and for
// InferencePools the Scheduler (filters → weighted scorers → pick) that
// FromProfile builds from the pool's picker profile. RoundRobin and Random
// are baselines for the routing benchmark.
package picker

import (
	"errors"
	"math/rand/v2"
	"net/http"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// ErrNoEndpoint means no candidate can take the request (HTTP 503).
var ErrNoEndpoint = errors.New("no ready endpoint")

// Request is what a picker may look at. It is built once per request by the
// server and passed by pointer, so fields can grow without changing the
// interface.
type Request struct {
	// Model is the model name the client sent (body "model"), if any.
	Model string
	// TargetModel is the model the request is sent to after rewrite rules.
	TargetModel string
	// Priority from the model rule or objective: Critical > 0, Standard 0,
	// Sheddable < 0.
	Priority int32
	// Header is the client's request header (read-only).
	Header http.Header
	// Body is the buffered request body when the server read it (JSON
	// requests), for prefix-aware scorers; nil otherwise. Read-only.
	Body []byte
	// MaxTokens is the request's output bound from its body (0: none
	// given), for the cost model's decode estimate.
	MaxTokens int

	// note is what the cost model predicted for its pick (Observe).
	note pickNote
}

// Picker picks one of candidates for req.
type Picker interface {
	Pick(req *Request, candidates []*endpoints.Endpoint) (*endpoints.Endpoint, error)
}

// LeastInFlight picks the endpoint with the fewest requests this proxy has
// open to it; ties are broken uniformly at random so equal endpoints share
// load. It is the Service picker.
type LeastInFlight struct {
	// rng breaks the ties (SetRand; nil: math/rand's global source).
	rng *rand.Rand
}

// SetRand makes the picker break ties with r instead of math/rand's
// global source, so that a simulation replays the same picks from the
// same seed. r is not safe for concurrent use: a picker given one must
// pick from one goroutine.
func (l *LeastInFlight) SetRand(r *rand.Rand) { l.rng = r }

// Pick implements Picker.
func (l LeastInFlight) Pick(_ *Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	var (
		best *endpoints.Endpoint
		min  int64
		ties uint64
	)
	for _, e := range cands {
		n := e.InFlight()
		switch {
		case best == nil || n < min:
			best, min, ties = e, n, 1
		case n == min:
			// Reservoir sampling keeps each tied endpoint with equal
			// probability without collecting them.
			ties++
			if uint64n(l.rng, ties) == 0 {
				best = e
			}
		}
	}
	if best == nil {
		return nil, ErrNoEndpoint
	}
	return best, nil
}
