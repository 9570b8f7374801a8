package picker

import "math"

// Scorer rates every candidate of a cycle in [0, 1] (higher is better),
// writing out[i] for c.Candidates[i].
type Scorer interface {
	Name() string
	Score(c *Cycle, out []float64)
}

// QueueScorer prefers short waiting queues (scraped queue plus this proxy's
// requests since the scrape), min-max normalised over the candidates. The
// spread is at least MinSpread requests, so that a difference of one queued
// request among otherwise idle servers does not swing the score from 0 to 1
// and override cache affinity. Stale endpoints score 0.
type QueueScorer struct{ MinSpread float64 }

// Name implements Scorer.
func (QueueScorer) Name() string { return "queue" }

// Score implements Scorer.
func (s QueueScorer) Score(c *Cycle, out []float64) {
	for i := range c.Candidates {
		out[i] = c.Candidates[i].Queue
	}
	normalize(c, out, s.MinSpread)
}

// RunningScorer prefers endpoints decoding fewer requests, min-max
// normalised like QueueScorer.
type RunningScorer struct{ MinSpread float64 }

// Name implements Scorer.
func (RunningScorer) Name() string { return "running" }

// Score implements Scorer.
func (s RunningScorer) Score(c *Cycle, out []float64) {
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		if cd.Fresh {
			out[i] = cd.Metrics.Running
		} else {
			out[i] = cd.Queue // only own in-flight is known
		}
	}
	normalize(c, out, s.MinSpread)
}

// normalize turns raw values (lower is better) into 1 − (v − min) /
// max(max − min, spread) over the candidates that have a usable value
// (fresh ones, or all when none is fresh); the others score 0.
func normalize(c *Cycle, out []float64, spread float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range c.Candidates {
		if c.AnyFresh && !c.Candidates[i].Fresh {
			continue
		}
		lo, hi = min(lo, out[i]), max(hi, out[i])
	}
	d := max(hi-lo, spread)
	if d <= 0 {
		d = 1 // all equal: every usable value scores 1 below
	}
	inv := 1 / d
	for i := range c.Candidates {
		if c.AnyFresh && !c.Candidates[i].Fresh {
			out[i] = 0
		} else {
			out[i] = 1 - (out[i]-lo)*inv
		}
	}
}

// KVCacheScorer prefers free KV cache: 1 − utilisation; stale endpoints 0.
type KVCacheScorer struct{}

// Name implements Scorer.
func (KVCacheScorer) Name() string { return "kv-cache" }

// Score implements Scorer.
func (KVCacheScorer) Score(c *Cycle, out []float64) {
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		switch {
		case cd.Fresh:
			out[i] = 1 - min(max(cd.Metrics.KVCacheUsage, 0), 1)
		case c.AnyFresh:
			out[i] = 0
		default:
			out[i] = 1
		}
	}
}
