package endpoints_test

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

const loraMetrics = `# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting 1
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a1,a2",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a3",waiting_lora_adapters="a4"} 1.8e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.6e9
`

func TestParseLoRANewestSeries(t *testing.T) {
	m, err := endpoints.ParseEngine(strings.NewReader(loraMetrics), "vllm")
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxLoRA != 4 || !slices.Equal(m.RunningAdapters, []string{"a3"}) || !slices.Equal(m.WaitingAdapters, []string{"a4"}) {
		t.Fatalf("%+v", m)
	}
	m, _ = endpoints.ParseEngine(strings.NewReader("vllm:num_requests_waiting 1\n"), "vllm")
	if m.MaxLoRA != 0 || m.RunningAdapters != nil {
		t.Fatalf("no LoRA info: %+v", m)
	}
}

func TestSinceScrape(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	e.Acquire(time.Now())
	e.Acquire(time.Now())
	e.Release()
	// Two started since the scrape, one finished: one is still load.
	if e.SinceScrape() != 1 || e.InFlight() != 1 {
		t.Fatalf("since %d inflight %d", e.SinceScrape(), e.InFlight())
	}
	e.SetMetrics(&endpoints.Metrics{At: time.Now()})
	if e.SinceScrape() != 0 || e.InFlight() != 1 {
		t.Fatal("a scrape resets the since-scrape count only")
	}
	// Sequential requests that finish add nothing to the estimate.
	e.Release() // the request from before the scrape
	e.Acquire(time.Now())
	e.Release()
	e.Acquire(time.Now())
	if e.SinceScrape() != 1 {
		t.Fatalf("since %d after one finished and one open request", e.SinceScrape())
	}
	if e.Hash == 0 || e.Hash != endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"}).Hash {
		t.Fatal("hash must be stable per address")
	}
}

func TestEjectionBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	e.ReportResult(false, now)
	e.ReportResult(false, now)
	if e.Ejected(now) {
		t.Fatal("two failures must not eject")
	}
	e.ReportResult(false, now)
	if !e.Ejected(now) || e.Ejected(now.Add(300*time.Millisecond)) {
		t.Fatal("third failure ejects for 250ms")
	}
	e.ReportResult(false, now)
	if !e.Ejected(now.Add(400 * time.Millisecond)) {
		t.Fatal("backoff must double")
	}
	for range 20 {
		e.ReportResult(false, now)
	}
	if e.Ejected(now.Add(11 * time.Second)) {
		t.Fatal("backoff is capped at 10s")
	}
	e.ReportResult(true, now)
	e.ReportResult(false, now.Add(time.Minute))
	if e.Ejected(now.Add(time.Minute)) {
		t.Fatal("a success resets the failure count")
	}
}

// TestScrapeRateIndependentOfProxies runs 1 and 4 registries (proxies)
// against one server with Proxies set accordingly: the server's total
// scrape count must not grow with the proxy count.
func TestScrapeRateIndependentOfProxies(t *testing.T) {
	rate := func(n int) int64 {
		var waiting, hits atomic.Int64
		srv := metricsServer(t, &waiting, &hits)
		addr := strings.TrimPrefix(srv.URL, "http://")
		for range n {
			reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Interval: 20 * time.Millisecond, Proxies: n})
			reg.Sync([]endpoints.Spec{{Address: addr, MetricsAddress: addr, Scrape: true}})
			defer reg.Close()
			if reg.Interval() != time.Duration(n)*20*time.Millisecond {
				t.Fatalf("interval %v", reg.Interval())
			}
		}
		time.Sleep(400 * time.Millisecond)
		return hits.Load()
	}
	one, four := rate(1), rate(4)
	// 400ms/20ms ≈ 20 scrapes either way; allow the first immediate scrape
	// of each proxy and jitter.
	if four > 2*one {
		t.Fatalf("4 proxies scraped %d times, 1 proxy %d", four, one)
	}
}

// TestUnseenScalesWithProxies: between scrapes each of N proxies sees 1/N
// of the requests, so its estimate of what the server got since the scrape
// is its own open requests plus N − 1 times its own send rate over the
// scrape's age — and follows SetProxies at run time.
func TestUnseenScalesWithProxies(t *testing.T) {
	reg, e, m := steadyEndpoint(t)
	at := m.At
	if r := e.SendRate(); math.Abs(r-20) > 0.5 {
		t.Fatalf("send rate %v, want ~20/s", r)
	}
	// 100 ms after the scrape, 3 other proxies sending 20/s each: ~6.
	if got := e.Unseen(m, at.Add(100*time.Millisecond)); math.Abs(got-6) > 0.2 {
		t.Fatalf("3 proxies × 20/s × 100 ms: unseen %v", got)
	}
	// This proxy's own open requests count once each, exactly.
	e.Acquire(time.Now())
	e.Acquire(time.Now())
	if got := e.Unseen(m, at); got != 2 {
		t.Fatalf("2 own requests at the scrape's time: unseen %v", got)
	}
	reg.SetProxies(1)
	if got := e.Unseen(m, at.Add(100*time.Millisecond)); got != 2 {
		t.Fatalf("after SetProxies(1) only own requests count: unseen %v", got)
	}
	m = &endpoints.Metrics{At: at.Add(time.Millisecond)}
	e.SetMetrics(m)
	if got := e.Unseen(m, m.At); got != 0 {
		t.Fatalf("a scrape shows everything sent before it: unseen %v", got)
	}
}

// steadyEndpoint is an endpoint of a registry of 4 proxies to which this
// proxy sent a steady 20 requests/s — one per 50 ms scrape, each finished
// before the next, for 5 rate windows — and its latest scrape.
func steadyEndpoint(t *testing.T) (*endpoints.Registry, *endpoints.Endpoint, *endpoints.Metrics) {
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Proxies: 4})
	t.Cleanup(reg.Close)
	e := reg.Sync([]endpoints.Spec{{Address: "10.0.0.1:8000"}})["10.0.0.1:8000"]
	at := time.Unix(1000, 0)
	for range 100 {
		e.SetMetrics(&endpoints.Metrics{At: at})
		e.Acquire(at)
		e.Release()
		at = at.Add(50 * time.Millisecond)
	}
	m := &endpoints.Metrics{At: at}
	e.SetMetrics(m)
	return reg, e, m
}

// TestUnseenOwnRequestCountsOnce: with 4 proxies and no traffic before, a
// request this proxy just sent is one request more on the server, not
// four: the other proxies' part comes from the send rate, which one
// request barely moves.
func TestUnseenOwnRequestCountsOnce(t *testing.T) {
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Proxies: 4})
	defer reg.Close()
	e := reg.Sync([]endpoints.Spec{{Address: "10.0.0.1:8000"}})["10.0.0.1:8000"]
	at := time.Unix(1000, 0)
	for range 20 {
		e.SetMetrics(&endpoints.Metrics{At: at})
		at = at.Add(50 * time.Millisecond)
	}
	m := &endpoints.Metrics{At: at}
	e.SetMetrics(m)
	e.Acquire(time.Now())
	if got := e.Unseen(m, at.Add(20*time.Millisecond)); got != 1 {
		t.Fatalf("one own request after an idle second: unseen %v", got)
	}
}

// TestUnseenCountsFleetSends: while the fleet exchange brings the other
// proxies' sends, Unseen counts those made after the latest scrape (not
// those before it, which the scrape shows) instead of the rate estimate;
// a new scrape starts the count again, and when the exchange goes quiet
// for longer than metrics stay fresh the estimate takes over again.
func TestUnseenCountsFleetSends(t *testing.T) {
	_, e, m := steadyEndpoint(t) // this proxy's rate makes the estimate non-zero
	at := m.At
	now := at.Add(100 * time.Millisecond)
	e.NoteOthersSend(at.Add(-10*time.Millisecond).UnixNano(), now.UnixNano()) // before the scrape: shown by it
	e.NoteOthersSend(at.Add(30*time.Millisecond).UnixNano(), now.UnixNano())
	e.NoteOthersSend(at.Add(60*time.Millisecond).UnixNano(), now.UnixNano())
	if got := e.Unseen(m, now); got != 2 {
		t.Fatalf("2 of the others' sends after the scrape: unseen %v (the rate estimate would say ~6)", got)
	}
	m2 := &endpoints.Metrics{At: now}
	e.SetMetrics(m2)
	if got := e.Unseen(m2, now); got != 0 {
		t.Fatalf("a new scrape shows them: unseen %v", got)
	}
	quiet := now.Add(e.StaleAfter() + time.Second)
	if got := e.Unseen(m2, quiet); got == 0 {
		t.Fatalf("the exchange quiet for %v: want the rate estimate back, got %v", quiet.Sub(now), got)
	}
}

// TestAdapterFilter: SetMetrics fills the filter from the running and
// waiting adapters, so a reported adapter always passes it, and an
// adapter whose bit no reported one shares never does.
func TestAdapterFilter(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	running, waiting := []string{"a", "food-review-1"}, []string{"sql-lora"}
	e.SetMetrics(&endpoints.Metrics{MaxLoRA: 4, RunningAdapters: running, WaitingAdapters: waiting, At: time.Now()})
	m := e.Metrics()
	var bits uint64
	for _, a := range append(running, waiting...) {
		if !m.MayReportAdapter(endpoints.AdapterBit(a)) {
			t.Fatalf("reported adapter %q does not pass the filter", a)
		}
		bits |= endpoints.AdapterBit(a)
	}
	ruledOut := 0
	for i := range 100 {
		bit := endpoints.AdapterBit(fmt.Sprintf("other-%d", i))
		if bit&bits == 0 {
			ruledOut++
			if m.MayReportAdapter(bit) {
				t.Fatalf("other-%d passes the filter without a reported adapter on its bit", i)
			}
		}
	}
	if ruledOut == 0 {
		t.Fatal("no unreported name was ruled out")
	}
	e.SetMetrics(&endpoints.Metrics{At: time.Now()})
	if e.Metrics().MayReportAdapter(bits) {
		t.Fatal("a scrape without adapters passes the filter")
	}
}
