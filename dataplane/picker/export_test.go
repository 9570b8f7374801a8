package picker

import (
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// ScoreForTest runs one scorer over es as a pick at now would.
func ScoreForTest(s Scorer, req *Request, es []*endpoints.Endpoint, now time.Time) []float64 {
	c := getCycle(req, now, len(es))
	defer putCycle(c)
	c.load(es)
	out := make([]float64, len(c.Candidates))
	s.Score(c, out)
	return out
}

// LoRAHomesForTest returns the addresses of model's home endpoints in the
// plan s computes for es.
func LoRAHomesForTest(s *LoRAScorer, model string, es []*endpoints.Endpoint, now time.Time) []string {
	c := getCycle(&Request{Model: model}, now, len(es))
	defer putCycle(c)
	c.load(es)
	var out []string
	for _, h := range (*s.buildPlan(c.Candidates, now.UnixNano()))[model].homes {
		for _, e := range es {
			if e.Hash == h {
				out = append(out, e.Address)
			}
		}
	}
	return out
}

// PrefixPickForTest is the prefix scorer's part of a pick at now: it
// returns the addresses its affinity ranks first and second ("" for none)
// and records the prompt as sent to the first.
func PrefixPickForTest(s *PrefixScorer, req *Request, es []*endpoints.Endpoint, now time.Time) (first, second string) {
	c := getCycle(req, now, len(es))
	defer putCycle(c)
	c.load(es)
	keys, n := c.prefixKeys()
	if n == 0 {
		return "", ""
	}
	b, sec, _ := s.affinity(c, keys)
	if sec >= 0 {
		second = c.Candidates[sec].Endpoint.Address
	}
	if b < 0 {
		return "", second
	}
	s.Record(c, c.Candidates[b].Endpoint)
	return c.Candidates[b].Endpoint.Address, second
}

// MatchHomesForTest exposes the prefix plan's matching: keys to endpoint
// hashes with capacity per endpoint.
func MatchHomesForTest(keys, eps []uint64, capacity int) map[uint64]uint64 {
	want := make([]int, len(keys))
	for i := range want {
		want[i] = 1
	}
	homes, _ := matchHomes(keys, want, eps, capacity, nil)
	out := make(map[uint64]uint64, len(homes))
	for k, hs := range homes {
		out[k] = hs[0]
	}
	return out
}

// Mix is the rendezvous weight function.
func Mix(x uint64) uint64 { return mix(x) }

// PlannedForTest is the number of keys in s's current prefix plan.
func PlannedForTest(s *PrefixScorer) int {
	pl := s.homes.plan.Load()
	if pl == nil {
		return 0
	}
	return len(pl.homes)
}

// PlannedHomesForTest is s's current prefix plan: affinity key → home
// endpoint hash.
func PlannedHomesForTest(s *PrefixScorer) map[uint64]uint64 {
	pl := s.homes.plan.Load()
	if pl == nil {
		return nil
	}
	out := make(map[uint64]uint64, len(pl.homes))
	for k, hs := range pl.homes {
		out[k] = hs[0]
	}
	return out
}
