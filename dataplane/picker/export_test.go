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
