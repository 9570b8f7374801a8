package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Arrivals is an open-loop arrival process: Poisson at Rate requests per
// simulated second, or, with OnMean set, bursty on/off traffic — Poisson
// at Rate during on periods, silence during off periods, both lengths
// exponentially distributed with the given means (a two-state Markov-
// modulated Poisson process), starting with an on period.
type Arrivals struct {
	Rate            float64
	OnMean, OffMean time.Duration
}

// times draws the arrival times within d.
func (a Arrivals) times(rng *rand.Rand, d time.Duration) []time.Duration {
	if a.OnMean <= 0 {
		return poisson(rng, a.Rate, a.Rate, d)
	}
	var out []time.Duration
	for t := time.Duration(0); t < d; {
		on := expDuration(rng, a.OnMean)
		for _, at := range poisson(rng, a.Rate, a.Rate, min(on, d-t)) {
			out = append(out, t+at)
		}
		t += on + expDuration(rng, a.OffMean)
	}
	return out
}

// MeanRate is the long-run request rate.
func (a Arrivals) MeanRate() float64 {
	if a.OnMean <= 0 {
		return a.Rate
	}
	return a.Rate * a.OnMean.Seconds() / (a.OnMean + a.OffMean).Seconds()
}

func (a Arrivals) String() string {
	if a.OnMean <= 0 {
		return fmt.Sprintf("Poisson %.1f req/s", a.Rate)
	}
	return fmt.Sprintf("bursts of Poisson %.1f req/s lasting %s on average, separated by %s of silence on average (mean %.1f req/s)",
		a.Rate, a.OnMean, a.OffMean, a.MeanRate())
}

func expDuration(rng *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(rng.ExpFloat64() * float64(mean))
}

// zipf draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s; s = 0 is uniform. Unlike
// math/rand's Zipf it takes any s ≥ 0 (popularity skews of real prompt
// sets are often near 1, where rand.Zipf is undefined).
type zipf struct{ cdf []float64 }

func newZipf(n int, s float64) zipf {
	z := zipf{cdf: make([]float64, n)}
	sum := 0.0
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	return z
}

// share is the probability of rank k.
func (z zipf) share(k int) float64 {
	if k == 0 {
		return z.cdf[0]
	}
	return z.cdf[k] - z.cdf[k-1]
}

func (z zipf) draw(rng *rand.Rand) int {
	k, _ := slices.BinarySearch(z.cdf, rng.Float64())
	return min(k, len(z.cdf)-1)
}

// Range is an inclusive range of token counts, drawn log-uniformly (so
// short values are as common per doubling as long ones).
type Range struct{ Min, Max int }

func (r Range) draw(rng *rand.Rand) int {
	if r.Max <= r.Min {
		return r.Min
	}
	lo, hi := math.Log(float64(max(r.Min, 1))), math.Log(float64(r.Max)+1)
	return min(int(math.Exp(lo+rng.Float64()*(hi-lo))), r.Max)
}

func (r Range) String() string {
	if r.Max <= r.Min {
		return fmt.Sprint(r.Min)
	}
	return fmt.Sprintf("%d–%d", r.Min, r.Max)
}
