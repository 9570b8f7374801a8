package endpoints_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/proto/freeport"
)

// TestOutOfDomainIsInvalid: every value a real server cannot report makes
// the sample an *InvalidError naming the series, never a zero ("idle").
func TestOutOfDomainIsInvalid(t *testing.T) {
	for _, tc := range []struct{ name, engine, body, series string }{
		{"negative waiting", "vllm", "vllm:num_requests_waiting -5\nvllm:kv_cache_usage_perc 0.1\n", "vllm:num_requests_waiting"},
		{"negative running", "vllm", "vllm:num_requests_running -1\n", "vllm:num_requests_running"},
		{"negative among per-model samples", "vllm", "vllm:num_requests_waiting{model_name=\"a\"} 3\nvllm:num_requests_waiting{model_name=\"b\"} -2\n", "vllm:num_requests_waiting"},
		{"NaN KV", "vllm", "vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc NaN\n", "vllm:kv_cache_usage_perc"},
		{"+Inf waiting", "trtllm", "trtllm_num_requests_waiting +Inf\n", "trtllm_num_requests_waiting"},
		{"-Inf KV", "sglang", "sglang:num_queue_reqs 0\nsglang:token_usage -Inf\n", "sglang:token_usage"},
		{"KV above 1", "vllm", "vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 1.5\n", "vllm:kv_cache_usage_perc"},
		{"absurd queue", "vllm", "vllm:num_requests_waiting 1e12\n", "vllm:num_requests_waiting"},
		{"used above max blocks", "triton", `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"} 9
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max"} 4
`, `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"}`},
		{"no blocks", "triton", `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"} 0
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max"} 0
`, `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max"}`},
		{"bad max_lora", "vllm", "vllm:num_requests_waiting 1\nvllm:lora_requests_info{max_lora=\"x\"} 1\n", "vllm:lora_requests_info"},
		{"negative max_lora", "vllm", "vllm:num_requests_waiting 1\nvllm:lora_requests_info{max_lora=\"-3\"} 1\n", "vllm:lora_requests_info"},
		{"NaN LoRA timestamp", "vllm", "vllm:num_requests_waiting 1\nvllm:lora_requests_info{max_lora=\"2\"} NaN\n", "vllm:lora_requests_info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := endpoints.ParseEngine(strings.NewReader(tc.body), tc.engine)
			var inv *endpoints.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("got %+v, %v; want an *InvalidError", m, err)
			}
			if !strings.HasPrefix(inv.Series, tc.series) || inv.Reason == "" {
				t.Fatalf("error %v names %q, want %q and a reason", err, inv.Series, tc.series)
			}
		})
	}
}

// TestInDomainEdges: the bounds themselves are valid; a KV utilisation a
// rounding error above 1 is clamped; empty adapter names are dropped.
func TestInDomainEdges(t *testing.T) {
	m, err := endpoints.ParseEngine(strings.NewReader("vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 1.0000000001\n"+
		"vllm:lora_requests_info{max_lora=\"0\",running_lora_adapters=\"a,,b\"} 1\n"), "vllm")
	if err != nil {
		t.Fatal(err)
	}
	if m.KVCacheUsage != 1 || len(m.RunningAdapters) != 2 {
		t.Fatalf("%+v", m)
	}
	if _, err := endpoints.ParseEngine(strings.NewReader(fmt.Sprintf("vllm:num_requests_waiting %d\n", endpoints.MaxRequests)), "vllm"); err != nil {
		t.Fatalf("MaxRequests waiting: %v", err)
	}
	// Only the families the proxy reads are parsed: a malformed line of
	// another one does not cost the sample, one of a read family does.
	m, err = endpoints.ParseEngine(strings.NewReader("# HELP vllm:num_requests_waiting Waiting.\n# TYPE vllm:num_requests_waiting gauge\n"+
		"vllm:num_requests_waiting 3\nvllm:other{{{ junk\n# a comment\n"), "vllm")
	if err != nil || m.Waiting != 3 {
		t.Fatalf("junk in an unread family: %+v, %v", m, err)
	}
	if _, err := endpoints.ParseEngine(strings.NewReader("vllm:num_requests_waiting{{{ 3\n"), "vllm"); err == nil {
		t.Fatal("a malformed line of a read family must fail the sample")
	}
}

// TestInvalidSampleIsStaleAtOnce: a scrape with out-of-domain values makes
// the endpoint's metrics unusable immediately (not after they age out),
// with the reason recorded, and a valid scrape restores them.
func TestInvalidSampleIsStaleAtOnce(t *testing.T) {
	var body atomic.Value
	body.Store("vllm:num_requests_waiting 2\nvllm:kv_cache_usage_perc 0.3\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body.Load().(string))
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 10 * time.Millisecond})
	t.Cleanup(reg.Close)
	ep := reg.Sync([]endpoints.Spec{{Address: addr, MetricsAddress: addr, Scrape: true}})[addr]
	testwait.Until(t, "the first scrape", func() bool { _, fresh := ep.Fresh(time.Now(), time.Hour); return fresh })

	body.Store("vllm:num_requests_waiting -4\nvllm:kv_cache_usage_perc 0.3\n")
	testwait.Until(t, "the invalid sample", func() bool { _, fresh := ep.Fresh(time.Now(), time.Hour); return !fresh })
	reason, since := ep.MetricsProblem()
	if !strings.Contains(reason, "vllm:num_requests_waiting") || !strings.Contains(reason, "negative") || since.IsZero() {
		t.Fatalf("problem %q since %v", reason, since)
	}
	if m := ep.Metrics(); m == nil || m.Waiting != 2 {
		t.Fatalf("the last valid sample must stay for the admin API, got %+v", m)
	}
	st := reg.Statuses()[0]
	if !st.MetricsInvalid || st.MetricsFailingForMs == nil {
		t.Fatalf("status %+v", st)
	}

	body.Store("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.3\n")
	testwait.Until(t, "recovery", func() bool { m, fresh := ep.Fresh(time.Now(), time.Hour); return fresh && m.Waiting == 1 })
	if reason, _ := ep.MetricsProblem(); reason != "" {
		t.Fatalf("problem %q after a good scrape", reason)
	}
}

// TestScrapeBounded: an oversized body is an error (not a truncated sample
// that happens to parse), a hanging one times out, and a failing endpoint
// is scraped less and less often.
func TestScrapeBounded(t *testing.T) {
	var hits atomic.Int64
	big := "vllm:num_requests_waiting 1\n" + strings.Repeat("# padding comment line to exceed the limit\n", 5<<20/44)
	mux := http.NewServeMux()
	mux.HandleFunc("/big/metrics", func(w http.ResponseWriter, r *http.Request) { hits.Add(1); fmt.Fprint(w, big) })
	release := make(chan struct{})
	mux.HandleFunc("/hang/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("vllm:num_requests_waiting 1\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	addr := strings.TrimPrefix(srv.URL, "http://")

	// The registry scrapes http://<metrics address>/metrics: a path in the
	// address selects the test server's handler.
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond})
	t.Cleanup(reg.Close)
	eps := reg.Sync([]endpoints.Spec{
		{Address: "big", MetricsAddress: addr + "/big", Scrape: true},
		{Address: "hang", MetricsAddress: addr + "/hang", Scrape: true},
	})
	testwait.Until(t, "the oversized body error", func() bool {
		msg, _ := eps["big"].LastError()
		return strings.Contains(msg, "exceeds")
	})
	testwait.Until(t, "the hanging scrape's timeout", func() bool {
		msg, _ := eps["hang"].LastError()
		return strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "Timeout")
	})
	if eps["big"].Metrics() != nil || eps["hang"].Metrics() != nil {
		t.Fatal("a failed scrape stored metrics")
	}
	// At a 10 ms interval, 1 s would be ~100 scrapes; backing off to 1 s
	// between failures leaves well under 20.
	before := hits.Load()
	time.Sleep(time.Second)
	if n := hits.Load() - before; n > 20 {
		t.Fatalf("%d scrapes of a failing endpoint in 1 s: no backoff", n)
	}
}

// TestRefusedScrapeEjects: a server that refuses the scrape connection on
// its serving port is gone — ejected at once, without waiting for requests
// to fail — and back in rotation with its first good scrape; a refused
// metrics port that is not the serving port only makes metrics unusable.
func TestRefusedScrapeEjects(t *testing.T) {
	// A port nothing listens on: freeport draws it from where no listener
	// on port 0 (another test's) can be given it meanwhile.
	port, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	other := "127.0.0.2:1"
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 10 * time.Millisecond})
	t.Cleanup(reg.Close)
	eps := reg.Sync([]endpoints.Spec{
		{Address: addr, MetricsAddress: addr, Scrape: true},
		{Address: other, MetricsAddress: addr, Scrape: true},
	})
	testwait.Until(t, "the refused endpoint's ejection", func() bool { return eps[addr].Ejected(time.Now()) })
	testwait.Until(t, "a refused scrape of the other", func() bool { msg, _ := eps[other].LastError(); return msg != "" })
	if eps[other].Ejected(time.Now()) {
		t.Fatal("an endpoint whose separate metrics port refuses was ejected")
	}

	// The server comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("address taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "vllm:num_requests_waiting 0\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	testwait.Until(t, "the first good scrape to lift the ejection", func() bool { return !eps[addr].Ejected(time.Now()) })
}
