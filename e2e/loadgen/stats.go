package loadgen

import (
	"cmp"
	"net/http"
	"slices"
	"time"
)

// ClassCounts counts outcomes of one criticality class.
type ClassCounts struct {
	Total, OK, Shed429, Failed int
	// TTFT of the class's successful requests.
	TTFT Percentiles
	ttft []float64
}

// Summary aggregates results. Latencies are in simulated seconds.
type Summary struct {
	Requests, OK int
	// Percentiles over successful requests.
	TTFT, ITL, E2E Percentiles
	// TokensPerSec is output tokens of successful requests per simulated
	// second, from the first send to the last completion.
	TokensPerSec float64
	// SteadyTokensPerSec is the output tokens of successful requests that
	// completed inside the steady window, per simulated second of it. The
	// window closes at the last send: for a closed loop every user has a
	// request open until then, so this is the fleet's throughput at
	// saturation, without the drain at the end (whose length depends on
	// which replica holds the last requests, not on how fast the fleet
	// serves). It opens after a warm-up of as many completions as requests
	// were in flight at the first completion — for a closed loop one per
	// user — so the start, when every user sends at once into empty
	// caches, does not count (0 when the run is too short for a window).
	SteadyTokensPerSec float64
	// CacheHit is cached / prompt tokens over successful requests.
	CacheHit float64
	// ByClass counts outcomes per criticality class ("" when unset).
	ByClass map[string]*ClassCounts
	// PerReplica counts successful requests per serving replica.
	PerReplica map[string]int
}

// Percentiles of a latency distribution, in seconds.
type Percentiles struct{ P50, P90, P99 float64 }

// Summarize aggregates results recorded at the given time scale.
func Summarize(rs []Result, timeScale float64) Summary {
	s := Summary{Requests: len(rs), ByClass: map[string]*ClassCounts{}, PerReplica: map[string]int{}}
	var ttft, itl, e2e []float64
	var prompt, cached, tokens int
	var first, last time.Duration = -1, 0
	sec := simSeconds(timeScale)
	for i := range rs {
		r := &rs[i]
		cc := s.ByClass[r.Class]
		if cc == nil {
			cc = &ClassCounts{}
			s.ByClass[r.Class] = cc
		}
		cc.Total++
		if first < 0 || r.Start < first {
			first = r.Start
		}
		switch {
		case r.OK():
			cc.OK++
			s.OK++
			s.PerReplica[r.Replica]++
			ttft = append(ttft, sec(r.TTFT))
			cc.ttft = append(cc.ttft, sec(r.TTFT))
			e2e = append(e2e, sec(r.E2E))
			if r.OutputTokens > 1 {
				itl = append(itl, sec(r.E2E-r.TTFT)/float64(r.OutputTokens-1))
			}
			prompt += r.PromptTokens
			cached += r.CachedTokens
			tokens += r.OutputTokens
			last = max(last, r.Start+r.E2E)
		case r.Status == http.StatusTooManyRequests:
			cc.Shed429++
		default:
			cc.Failed++
		}
	}
	s.TTFT, s.ITL, s.E2E = pct(ttft), pct(itl), pct(e2e)
	for _, cc := range s.ByClass {
		cc.TTFT, cc.ttft = pct(cc.ttft), nil
	}
	if span := sec(last - first); span > 0 {
		s.TokensPerSec = float64(tokens) / span
	}
	s.SteadyTokensPerSec = steadyThroughput(rs, sec)
	if prompt > 0 {
		s.CacheHit = float64(cached) / float64(prompt)
	}
	return s
}

// simSeconds converts wall durations recorded at timeScale (wall seconds
// per simulated second; ≤ 0 means 1) to simulated seconds.
func simSeconds(timeScale float64) func(time.Duration) float64 {
	if timeScale <= 0 {
		timeScale = 1
	}
	return func(d time.Duration) float64 { return d.Seconds() / timeScale }
}

// steadyThroughput is SteadyTokensPerSec.
func steadyThroughput(rs []Result, sec func(time.Duration) float64) float64 {
	var lastSend time.Duration
	var ends []time.Duration
	for i := range rs {
		r := &rs[i]
		lastSend = max(lastSend, r.Start)
		if r.OK() {
			ends = append(ends, r.Start+r.E2E)
		}
	}
	if len(ends) == 0 {
		return 0
	}
	slices.Sort(ends)
	warm := 0 // requests in flight when the first one completed
	for i := range rs {
		if rs[i].Start < ends[0] {
			warm++
		}
	}
	if warm > len(ends) {
		return 0
	}
	open := ends[warm-1]
	if lastSend <= open {
		return 0
	}
	tokens := 0
	for i := range rs {
		if r := &rs[i]; r.OK() && r.Start+r.E2E > open && r.Start+r.E2E <= lastSend {
			tokens += r.OutputTokens
		}
	}
	return float64(tokens) / sec(lastSend-open)
}

func pct(v []float64) Percentiles {
	slices.Sort(v)
	return Percentiles{P50: Quantile(v, 0.50), P90: Quantile(v, 0.90), P99: Quantile(v, 0.99)}
}

// Quantile is the q-quantile of sorted by nearest rank: the value at index
// ⌊q·n⌋ (the last one for q close to 1), the zero value when sorted is
// empty. Every latency percentile of the benchmarks is this one.
func Quantile[T cmp.Ordered](sorted []T, q float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// LoadImbalance is max/mean of successful requests per replica over n
// replicas (replicas that served nothing count as 0).
func (s *Summary) LoadImbalance(n int) float64 {
	if s.OK == 0 || n == 0 {
		return 0
	}
	m := 0
	for _, c := range s.PerReplica {
		m = max(m, c)
	}
	return float64(m) / (float64(s.OK) / float64(n))
}
