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
	if v, ok := kvUsage(fams, names); ok {
		m.KVCacheUsage, found = v, true
	}
	if !found {
		return nil, fmt.Errorf("none of %v, %v, %v present", names.waiting, names.running, names.kv)
	}
	if names.lora != "" {
		parseLoRA(fams[names.lora], &m)
	}
	return &m, nil
}

// kvUsage is the first present KV utilisation series, else used / max
// blocks when the engine exposes those.
func kvUsage(fams map[string]*dto.MetricFamily, names metricNames) (float64, bool) {
	for _, sel := range names.kv {
		if v, ok := maxOf(fams, sel); ok {
			return v, true
		}
	}
	if names.kvUsed.name == "" {
		return 0, false
	}
	used, ok1 := maxOf(fams, names.kvUsed)
	total, ok2 := maxOf(fams, names.kvMax)
	if !ok1 || !ok2 || total <= 0 {
		return 0, false
	}
	return min(used/total, 1), true
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

// sum adds the samples of the first present series: a server exposing one
// sample per model (label model_name) queues them all.
func sum(fams map[string]*dto.MetricFamily, sels []series) (float64, bool) {
	for _, sel := range sels {
		var t float64
		found := false
		for _, mt := range fams[sel.name].GetMetric() {
			if sel.matches(mt) {
				t += value(mt)
				found = true
			}
		}
		if found {
			return t, true
		}
	}
	return 0, false
}

// maxOf is the largest sample of sel.
func maxOf(fams map[string]*dto.MetricFamily, sel series) (float64, bool) {
	v, found := math.Inf(-1), false
	for _, mt := range fams[sel.name].GetMetric() {
		if sel.matches(mt) {
			v, found = math.Max(v, value(mt)), true
		}
	}
	return v, found
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
