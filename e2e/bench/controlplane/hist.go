package main

import (
	"fmt"
	"math"
	"net/http"
	"sort"

	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
)

// histogram is a Prometheus histogram of the control plane's as scraped:
// cumulative counts by upper bound.
type histogram struct {
	bounds []float64
	counts []uint64
	n      uint64
}

// scrapeHistogram reads the histogram name from the control plane's
// /metrics.
func scrapeHistogram(addr, name string) (histogram, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(prommodel.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return histogram{}, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	f, ok := families[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
		return histogram{}, fmt.Errorf("histogram %s not found at %s", name, addr)
	}
	hist := f.GetMetric()[0].GetHistogram()
	h := histogram{n: hist.GetSampleCount()}
	for _, b := range hist.GetBucket() {
		h.bounds = append(h.bounds, b.GetUpperBound())
		h.counts = append(h.counts, b.GetCumulativeCount())
	}
	return h, nil
}

// since is what was observed between before and h (the same histogram
// scraped twice).
func (h histogram) since(before histogram) histogram {
	out := histogram{bounds: h.bounds, counts: make([]uint64, len(h.counts)), n: h.n - before.n}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(before.counts) {
			out.counts[i] -= before.counts[i]
		}
	}
	return out
}

// total is the number of observations.
func (h histogram) total() uint64 { return h.n }

// quantile is the upper bound of the bucket holding quantile q (+Inf when
// it is past the last finite bound, 0 without observations): the buckets
// double, so it says "at most", within a factor of 2.
func (h histogram) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	i := sort.Search(len(h.counts), func(i int) bool { return h.counts[i] >= rank })
	if i == len(h.counts) {
		return math.Inf(1)
	}
	return h.bounds[i]
}
