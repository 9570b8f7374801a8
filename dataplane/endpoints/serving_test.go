package endpoints_test

import (
	"math"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// TestBatchSeen: the largest running batch any scrape showed, own or
// relayed; a smaller batch later does not lower it.
func TestBatchSeen(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	if got := e.BatchSeen(); got != 0 {
		t.Fatalf("before any scrape: %v, want 0", got)
	}
	at := time.Unix(1_000, 0)
	e.SetMetrics(&endpoints.Metrics{Running: 5, At: at})
	e.Adopt(&endpoints.Metrics{Running: 12, At: at.Add(time.Millisecond)})
	e.SetMetrics(&endpoints.Metrics{Running: 3, At: at.Add(2 * time.Millisecond)})
	if got := e.BatchSeen(); got != 12 {
		t.Fatalf("after batches 5, 12 (relayed), 3: %v, want 12", got)
	}
}

// TestSendPrefill: the mean uncached prompt of the latest sends, the first
// ones averaged as they come and then about the last 16; the backlog takes
// a send's prefill less what the endpoint prefilled since it was made.
func TestSendPrefill(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	const rate = 4000 // tokens per second
	now := time.Unix(1_000, 0).UnixNano()
	e.AddSend(1000, now, now, rate)
	e.AddSend(3000, now, now, rate)
	if got := e.SendPrefill(); got != 2000 {
		t.Fatalf("mean of 1,000 and 3,000: %v", got)
	}
	if got := e.Backlog(now, rate); got != 4000 {
		t.Fatalf("backlog %v, want 4,000", got)
	}
	for range 200 {
		e.AddSend(100, now, now, rate)
	}
	if got := e.SendPrefill(); math.Abs(got-100) > 1 {
		t.Fatalf("after 200 sends of 100 tokens: mean %v", got)
	}
	// Another proxy's send made 250 ms ago: 1,000 of its tokens are
	// prefilled by now.
	before := e.Backlog(now, rate)
	e.AddSend(3000, now-250e6, now, rate)
	if got := e.Backlog(now, rate) - before; math.Abs(got-2000) > 1e-6 {
		t.Fatalf("a 3,000-token send made 250 ms ago added %v to the backlog, want 2,000", got)
	}
}

// TestCacheTrust: 1 until responses say otherwise; one miss costs a
// little, a run of misses nearly all of it, confirmed hits bring it back;
// over-reports count no more than the matched prefix, and values that are
// not numbers, negative or infinite change nothing.
func TestCacheTrust(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	if got := e.CacheTrust(); got != 1 {
		t.Fatalf("before any response: %v, want 1", got)
	}
	e.NoteCached(1000, 0, 1000)
	if got := e.CacheTrust(); !(got > 0.9 && got < 1) {
		t.Fatalf("after one response with nothing cached of 1000 expected: %v, want just below 1", got)
	}
	for range 60 {
		e.NoteCached(1000, 0, 1000)
	}
	low := e.CacheTrust()
	if !(low > 0 && low < 0.1) {
		t.Fatalf("after 61 responses with nothing cached: %v, want near 0", low)
	}
	for _, bad := range [][3]float64{{math.NaN(), 1000, 1000}, {1000, math.NaN(), 1000}, {math.Inf(1), 0, 1000},
		{1000, math.Inf(1), 1000}, {-5, 0, 1000}, {1000, -1, 1000}, {0, 0, 0}, {1000, 1000, math.NaN()}} {
		e.NoteCached(bad[0], bad[1], bad[2])
		if got := e.CacheTrust(); math.IsNaN(got) || (bad[2] == bad[2] && got != low) {
			t.Fatalf("after NoteCached(%v): %v, want %v unchanged", bad, got, low)
		}
	}
	for range 60 {
		e.NoteCached(500, 1e9, 1000) // over-reports: capped at the 1000 matched
	}
	if got := e.CacheTrust(); got != 1 {
		t.Fatalf("after 60 responses reporting more than expected: %v, want 1", got)
	}
}

// TestPrefilled: a first token takes what the backlog still counts of the
// prefill ahead of it off, less what the backlog drained since; what was
// sent after stays, and nothing goes below zero or on bad numbers.
func TestPrefilled(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	const rate = 1000 // tokens per second
	now := time.Unix(1_000, 0).UnixNano()
	ahead := e.AddSend(4000, now, now, rate)
	if ahead != 4000 {
		t.Fatalf("AddSend returned %v, want the backlog of 4,000", ahead)
	}
	// 500 ms later another 2,000 tokens queue behind it; 100 ms after
	// that its first token comes (the engine is faster than rate): of
	// the 4,000, 3,400 are still counted and all are done.
	e.AddSend(2000, now+500e6, now+500e6, rate)
	fb := now + 600e6
	before := e.Backlog(fb, rate) // 4,000 + 2,000 − 600
	got := e.Prefilled(ahead-0.6*rate, fb, fb, rate)
	if got != 3400 || e.Backlog(fb, rate) != before-3400 {
		t.Fatalf("took off %v, backlog %v; want 3,400 off %v", got, e.Backlog(fb, rate), before)
	}
	// The same news relayed 50 ms later to another proxy's endpoint: it
	// takes off what its own backlog has not drained since.
	r := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	r.AddSend(4000, now, now, rate)
	r.AddSend(2000, now+500e6, now+500e6, rate)
	if got := r.Prefilled(3400, fb, fb+50e6, rate); got != 3350 {
		t.Fatalf("relayed 50 ms late: took off %v, want 3,350", got)
	}
	// Never below zero; nothing on news the backlog already drained, on
	// a NaN or an infinity.
	if got := e.Prefilled(1e9, fb, fb, rate); got != 2000 || e.Backlog(fb, rate) != 0 {
		t.Fatalf("took off %v to %v, want the 2,000 left to 0", got, e.Backlog(fb, rate))
	}
	e.AddSend(1000, fb, fb, rate)
	for _, v := range []float64{100, math.NaN(), math.Inf(1), -5} {
		if got := e.Prefilled(v, fb-time.Second.Nanoseconds(), fb, rate); got != 0 {
			t.Fatalf("Prefilled(%v, a second ago) took off %v", v, got)
		}
	}
	if e.Backlog(fb, rate) != 1000 {
		t.Fatalf("backlog %v after news that changes nothing, want 1,000", e.Backlog(fb, rate))
	}
}
