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
