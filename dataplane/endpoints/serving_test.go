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
