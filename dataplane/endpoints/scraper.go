package endpoints

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricNames are the series carrying one engine's load signals.
type metricNames struct {
	waiting []string
	running []string
	kv      []string // first present wins (newer name first)
	lora    string   // info gauge with adapter labels; "" when the engine has none
}

var engineMetrics = map[string]metricNames{
	"vllm": {
		waiting: []string{"vllm:num_requests_waiting"},
		running: []string{"vllm:num_requests_running"},
		kv:      []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"},
		lora:    "vllm:lora_requests_info",
	},
	"sglang": {
		waiting: []string{"sglang:num_queue_reqs"},
		running: []string{"sglang:num_running_reqs"},
		kv:      []string{"sglang:token_usage"},
	},
	"trtllm": {
		waiting: []string{"trtllm_num_requests_waiting"},
		running: []string{"trtllm_num_requests_running"},
		kv:      []string{"trtllm_kv_cache_utilization"},
	},
}

func namesFor(engine string) metricNames {
	if n, ok := engineMetrics[engine]; ok {
		return n
	}
	return engineMetrics["vllm"]
}

// maxMetricsBytes bounds what one scrape reads, so a broken server cannot
// make the proxy buffer without limit.
const maxMetricsBytes = 4 << 20

type scraper struct {
	ep     *Endpoint
	client *http.Client
	url    string
	names  metricNames
	// interval returns the current interval between scrapes (it changes
	// with the number of proxies sharing the servers).
	interval func() time.Duration
	timeout  time.Duration
	logger   *slog.Logger
	onScrape func(*Endpoint) // may be nil
}

func (s *scraper) run(ctx context.Context) {
	// Scrape at once so a new endpoint has state before its first request
	// is likely to arrive, then every interval with jitter.
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.scrape(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.ep.lastErr.Store(&scrapeError{msg: err.Error(), at: time.Now()})
			if !failing {
				s.logger.Warn("scrape failed", "url", s.url, "err", err)
			}
			failing = true
		} else {
			if failing {
				s.logger.Info("scrape recovered", "url", s.url)
			}
			failing = false
			s.ep.lastErr.Store(nil)
		}
		t.Reset(jitter(s.interval()))
	}
}

// jitter spreads d uniformly over [0.8d, 1.2d).
func jitter(d time.Duration) time.Duration {
	return d*8/10 + time.Duration(rand.Int64N(int64(d)*4/10+1))
}

func (s *scraper) scrape(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	// Ask for the text format: it is what expfmt's text parser reads and
	// what every model server offers.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: status %d", s.url, resp.StatusCode)
	}
	m, err := parse(io.LimitReader(resp.Body, maxMetricsBytes), s.names)
	if err != nil {
		return fmt.Errorf("GET %s: %w", s.url, err)
	}
	m.At = time.Now()
	s.ep.SetMetrics(m)
	s.ep.scrapes.Add(1)
	if s.onScrape != nil {
		s.onScrape(s.ep)
	}
	return nil
}

// ParseEngine reads a Prometheus text exposition and extracts the load
// signals of the given engine type (vllm when unknown). Missing signals are
// zero; a body with none of them is an error, since picking on it would
// treat a misconfigured server as idle.
func ParseEngine(r io.Reader, engine string) (*Metrics, error) {
	return parse(r, namesFor(engine))
}

// parse is ParseEngine with explicit names.
func parse(r io.Reader, names metricNames) (*Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	var m Metrics
	found := false
	if v, ok := sum(fams, names.waiting); ok {
		m.Waiting, found = v, true
	}
	if v, ok := sum(fams, names.running); ok {
		m.Running, found = v, true
	}
	for _, n := range names.kv {
		if v, ok := maxOf(fams[n]); ok {
			m.KVCacheUsage, found = v, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("none of %v, %v, %v present", names.waiting, names.running, names.kv)
	}
	if names.lora != "" {
		parseLoRA(fams[names.lora], &m)
	}
	return &m, nil
}

// parseLoRA reads vLLM's lora_requests_info: one series per label set seen
// recently, its value the time it was last current, so the newest series is
// the state now.
func parseLoRA(f *dto.MetricFamily, m *Metrics) {
	var newest *dto.Metric
	for _, mt := range f.GetMetric() {
		if newest == nil || value(mt) > value(newest) {
			newest = mt
		}
	}
	if newest == nil {
		return
	}
	for _, l := range newest.GetLabel() {
		switch l.GetName() {
		case "running_lora_adapters":
			m.RunningAdapters = splitAdapters(l.GetValue())
		case "waiting_lora_adapters":
			m.WaitingAdapters = splitAdapters(l.GetValue())
		case "max_lora":
			if n, err := strconv.Atoi(l.GetValue()); err == nil && n > 0 {
				m.MaxLoRA = n
			}
		}
	}
}

func splitAdapters(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(s, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// sum adds the series of the first present family: a server exposing one
// series per model (label model_name) queues them all.
func sum(fams map[string]*dto.MetricFamily, names []string) (float64, bool) {
	for _, n := range names {
		f := fams[n]
		if f == nil || len(f.GetMetric()) == 0 {
			continue
		}
		var t float64
		for _, mt := range f.GetMetric() {
			t += value(mt)
		}
		return t, true
	}
	return 0, false
}

func maxOf(f *dto.MetricFamily) (float64, bool) {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, false
	}
	v := math.Inf(-1)
	for _, mt := range f.GetMetric() {
		v = math.Max(v, value(mt))
	}
	return v, true
}

func value(m *dto.Metric) float64 {
	var v float64
	switch {
	case m.GetGauge() != nil:
		v = m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
