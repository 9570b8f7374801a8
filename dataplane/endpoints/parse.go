package endpoints

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Domain bounds of the scraped load signals. A model server is outside the
// proxy's trust: a value no real server reports — negative, NaN, ±Inf, a
// KV utilisation above 1, more queued or running requests than any engine
// holds — makes the whole sample invalid (the endpoint's metrics count as
// stale), never a favourable default: a server reporting -5 waiting
// requests must not read as the idlest one, nor NaN as idle.
const (
	// MaxRequests bounds waiting and running requests on one server
	// (vLLM's scheduler holds a few thousand at most).
	MaxRequests = 1 << 20
	// MaxLoRASlots bounds max_lora.
	MaxLoRASlots = 1 << 10
	// MaxAdapters bounds the adapters one LoRA series may list.
	MaxAdapters = 1 << 10
	// kvSlack is how far above 1 a KV utilisation may be and still be
	// rounding (it is clamped to 1).
	kvSlack = 1e-6
)

// InvalidError is a sample with a value outside its domain.
type InvalidError struct {
	// Series is the offending series, Value its value (NaN for a label
	// that does not parse) and Reason what is wrong with it.
	Series string
	Value  float64
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid metrics: %s = %v: %s", e.Series, e.Value, e.Reason)
}

// ErrTooLarge is returned when a /metrics body exceeds the scrape limit.
var ErrTooLarge = errors.New("metrics body too large")

// ParseEngine reads a Prometheus text exposition and extracts the load
// signals of the given engine type (vllm when unknown). Missing signals are
// zero; a body with none of them is an error, since picking on it would
// treat a misconfigured server as idle, and so is a value outside its
// domain (an *InvalidError).
func ParseEngine(r io.Reader, engine string) (*Metrics, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	m, _, err := parse(body, namesFor(engine), nil)
	return m, err
}

// parse is ParseEngine on a body in memory with explicit names; scratch
// is a buffer to reuse for the lines it parses, returned grown.
func parse(body []byte, names metricNames, scratch []byte) (*Metrics, []byte, error) {
	scratch = keepFamilies(body, names.families(), scratch[:0])
	m, err := parseKept(scratch, names)
	return m, scratch, err
}

// parseKept parses the lines keepFamilies kept.
func parseKept(kept []byte, names metricNames) (*Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(kept))
	if err != nil {
		return nil, err
	}
	var m Metrics
	found := false
	v, ok, err := sum(fams, names.waiting, MaxRequests)
	if err != nil {
		return nil, err
	}
	if ok {
		m.Waiting, found = v, true
	}
	if v, ok, err = sum(fams, names.running, MaxRequests); err != nil {
		return nil, err
	} else if ok {
		m.Running, found = v, true
	}
	if v, ok, err = kvUsage(fams, names); err != nil {
		return nil, err
	} else if ok {
		m.KVCacheUsage, found = v, true
	}
	if !found {
		return nil, fmt.Errorf("none of %v, %v, %v present", names.waiting, names.running, names.kv)
	}
	if names.lora != "" {
		if err := parseLoRA(fams[names.lora], &m); err != nil {
			return nil, err
		}
	}
	// The cache size only refines estimates: a server that does not say
	// (or says nonsense) is still usable.
	if v, ok := kvCapacity(fams, names.shape); ok {
		m.KVCapacity = v
	}
	return &m, nil
}

// kvUsage is the first present KV utilisation series, else used / max
// blocks when the engine exposes those.
func kvUsage(fams map[string]*dto.MetricFamily, names metricNames) (float64, bool, error) {
	for _, sel := range names.kv {
		v, ok, err := maxOf(fams, sel, 1+kvSlack)
		if err != nil || ok {
			return min(v, 1), ok, err
		}
	}
	if names.kvUsed.name == "" {
		return 0, false, nil
	}
	used, ok1, err := maxOf(fams, names.kvUsed, math.MaxInt64)
	if err != nil {
		return 0, false, err
	}
	total, ok2, err := maxOf(fams, names.kvMax, math.MaxInt64)
	if err != nil || !ok1 || !ok2 {
		return 0, false, err
	}
	if total <= 0 {
		return 0, false, &InvalidError{Series: names.kvMax.String(), Value: total, Reason: "no KV blocks"}
	}
	if used > total {
		return 0, false, &InvalidError{Series: names.kvUsed.String(), Value: used,
			Reason: "more KV blocks used than " + names.kvMax.String() + " = " + strconv.FormatFloat(total, 'g', -1, 64)}
	}
	return used / total, true, nil
}

// parseLoRA reads vLLM's lora_requests_info: one series per label set seen
// recently, its value the time it was last current, so the newest series is
// the state now.
func parseLoRA(f *dto.MetricFamily, m *Metrics) error {
	var newest *dto.Metric
	for _, mt := range f.GetMetric() {
		v := value(mt)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return &InvalidError{Series: f.GetName(), Value: v, Reason: "not a finite timestamp"}
		}
		if newest == nil || v > value(newest) {
			newest = mt
		}
	}
	if newest == nil {
		return nil
	}
	for _, l := range newest.GetLabel() {
		var err error
		switch l.GetName() {
		case "running_lora_adapters":
			m.RunningAdapters, err = splitAdapters(f.GetName(), l.GetValue())
		case "waiting_lora_adapters":
			m.WaitingAdapters, err = splitAdapters(f.GetName(), l.GetValue())
		case "max_lora":
			n, perr := strconv.Atoi(l.GetValue())
			if perr != nil || n < 0 || n > MaxLoRASlots {
				v := math.NaN()
				if perr == nil {
					v = float64(n)
				}
				return &InvalidError{Series: f.GetName() + "{max_lora=" + strconv.Quote(l.GetValue()) + "}", Value: v,
					Reason: "max_lora is not an integer in [0, " + strconv.Itoa(MaxLoRASlots) + "]"}
			}
			m.MaxLoRA = n
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// splitAdapters splits a comma-separated adapter list, dropping empty
// names, and refuses one longer than MaxAdapters.
func splitAdapters(series, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if len(out) == MaxAdapters {
			return nil, &InvalidError{Series: series, Value: math.NaN(), Reason: "lists more than " + strconv.Itoa(MaxAdapters) + " adapters"}
		}
		out = append(out, a)
	}
	return out, nil
}

// sum adds the samples of the first present series: a server exposing one
// sample per model (label model_name) queues them all. Each sample must be
// a count in [0, limit], and so must their sum.
func sum(fams map[string]*dto.MetricFamily, sels []series, limit float64) (float64, bool, error) {
	for _, sel := range sels {
		var t float64
		found, err := each(fams, sel, limit, func(v float64) { t += v })
		if err != nil {
			return 0, false, err
		}
		if !found {
			continue
		}
		if t > limit {
			return 0, false, &InvalidError{Series: sel.String(), Value: t, Reason: "sums above " + strconv.FormatFloat(limit, 'g', -1, 64)}
		}
		return t, true, nil
	}
	return 0, false, nil
}

// maxOf is the largest sample of sel; each must be in [0, limit].
func maxOf(fams map[string]*dto.MetricFamily, sel series, limit float64) (float64, bool, error) {
	var v float64
	found, err := each(fams, sel, limit, func(x float64) { v = max(v, x) })
	return v, found, err
}

// each calls f with every sample of sel after checking it is in [0,
// limit], and reports whether there was one.
func each(fams map[string]*dto.MetricFamily, sel series, limit float64, f func(float64)) (bool, error) {
	found := false
	for _, mt := range fams[sel.name].GetMetric() {
		if !sel.matches(mt) {
			continue
		}
		v := value(mt)
		if err := check(sel, v, limit); err != nil {
			return false, err
		}
		f(v)
		found = true
	}
	return found, nil
}

// check refuses a sample outside [0, limit] (NaN and ±Inf included).
func check(sel series, v, limit float64) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return &InvalidError{Series: sel.String(), Value: v, Reason: "not a finite number"}
	case v < 0:
		return &InvalidError{Series: sel.String(), Value: v, Reason: "negative"}
	case v > limit:
		return &InvalidError{Series: sel.String(), Value: v, Reason: "above " + strconv.FormatFloat(limit, 'g', -1, 64)}
	}
	return nil
}

// value is a sample's value as exposed (NaN and ±Inf included: check
// decides what is acceptable).
func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// cappedReader reads at most limit bytes and then fails with ErrTooLarge,
// so an oversized body is an error rather than a truncated exposition
// that may still parse.
type cappedReader struct {
	r     io.Reader
	limit int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.limit < 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > c.limit+1 {
		p = p[:c.limit+1]
	}
	n, err := c.r.Read(p)
	c.limit -= int64(n)
	if c.limit < 0 {
		return n, ErrTooLarge
	}
	return n, err
}
