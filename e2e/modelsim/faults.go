package modelsim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
)

// Metrics faults: what a broken or hostile model server's /metrics looks
// like, for testing that a gateway does not trust it (Config.MetricsFault).
const (
	// MetricsNegative reports negative waiting requests and KV usage.
	MetricsNegative = "negative"
	// MetricsNaN reports NaN for them.
	MetricsNaN = "nan"
	// MetricsInf reports -Inf for them.
	MetricsInf = "inf"
	// MetricsOversized appends 5 MiB of comments to a valid exposition.
	MetricsOversized = "oversized"
	// MetricsHanging sends half the exposition and then nothing, until
	// the scraper gives up.
	MetricsHanging = "hanging"
	// MetricsJunk answers 64 KiB of random bytes.
	MetricsJunk = "junk"
)

// MetricsFaults lists the values Config.MetricsFault accepts ("" is none).
var MetricsFaults = []string{MetricsNegative, MetricsNaN, MetricsInf, MetricsOversized, MetricsHanging, MetricsJunk}

func validMetricsFault(f string) error {
	if f == "" || slices.Contains(MetricsFaults, f) {
		return nil
	}
	return fmt.Errorf("unknown metrics fault %q (want one of %s)", f, strings.Join(MetricsFaults, ", "))
}

// faultyMetrics serves the exposition next produces with fault applied.
func (r *Replica) faultyMetrics(next http.Handler, fault string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &recorder{header: http.Header{}}
		plain := req.Clone(req.Context())
		plain.Header.Del("Accept-Encoding") // the fault is applied to text
		next.ServeHTTP(rec, plain)
		body := rec.body.Bytes()
		w.Header().Set("Content-Type", rec.header.Get("Content-Type"))
		switch fault {
		case MetricsNegative:
			body = r.rewriteLoad(body, "-50", "-0.5")
		case MetricsNaN:
			body = r.rewriteLoad(body, "NaN", "NaN")
		case MetricsInf:
			body = r.rewriteLoad(body, "-Inf", "-Inf")
		case MetricsOversized:
			pad := bytes.Repeat([]byte("# padding a model server should not send\n"), 5<<20/41+1)
			body = append(body, pad...)
		case MetricsHanging:
			w.Write(body[:len(body)/2])
			http.NewResponseController(w).Flush()
			<-req.Context().Done()
			return
		case MetricsJunk:
			body = make([]byte, 64<<10)
			for i := range body {
				body[i] = byte(rand.IntN(256))
			}
		}
		w.Write(body)
	})
}

// rewriteLoad replaces the values of the waiting and KV usage samples.
func (r *Replica) rewriteLoad(body []byte, waiting, kv string) []byte {
	family := func(sel string) string { f, _, _, _ := splitSelector(sel); return f }
	wf, kf := family(r.metrics.names.waiting), family(r.metrics.names.kvUsage)
	var out bytes.Buffer
	for line := range bytes.Lines(body) {
		name, _, _ := bytes.Cut(line, []byte(" "))
		name, _, _ = bytes.Cut(name, []byte("{"))
		v := ""
		switch {
		case len(line) == 0 || line[0] == '#':
		case string(name) == wf:
			v = waiting
		case string(name) == kf:
			v = kv
		}
		if v == "" {
			out.Write(line)
			continue
		}
		i := bytes.LastIndexByte(bytes.TrimRight(line, "\n"), ' ')
		out.Write(line[:i+1])
		out.WriteString(v + "\n")
	}
	return out.Bytes()
}

// recorder is a ResponseWriter that keeps what it is given.
type recorder struct {
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(int)             {}
