package routesim

import (
	"fmt"

	"github.com/infergate/infergate/e2e/loadgen"
)

// Summary is the benchmark's summary of a run plus its load spread.
type Summary struct {
	loadgen.Summary
	// MaxMeanLoad is the busiest replica's requests over the mean.
	MaxMeanLoad float64
}

// Summarize aggregates outcomes the way the wall-clock benchmark does.
func Summarize(w Workload, out []Outcome, replicas int) Summary {
	rs := make([]loadgen.Result, len(out))
	for i, o := range out {
		rs[i] = loadgen.Result{Index: i, Status: o.Status, Start: o.Sent, TTFT: o.TTFT, E2E: o.E2E,
			OutputTokens: o.Output, PromptTokens: o.Prompt, CachedTokens: o.Cached}
		switch p := w.Jobs[i].Priority; {
		case p > 0:
			rs[i].Class = "critical"
		case p < 0:
			rs[i].Class = "sheddable"
		}
		if o.Replica >= 0 {
			rs[i].Replica = fmt.Sprint(o.Replica)
		}
	}
	s := Summary{Summary: loadgen.Summarize(rs, 1)}
	var total, most int
	for _, n := range s.PerReplica {
		total += n
		most = max(most, n)
	}
	if total > 0 {
		s.MaxMeanLoad = float64(most) / (float64(total) / float64(replicas))
	}
	return s
}
