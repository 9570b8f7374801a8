package endpoints_test

import (
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// TestAdoptRelayedScrape: another proxy's scrape taken after the one held
// replaces it (marked relayed, keeping the KV capacity and LoRA slots it
// leaves out), and the requests sent since it was taken — this proxy's
// own and the others' — count as unseen again, those before it not; an
// older relayed scrape changes nothing, and this proxy's next own scrape
// takes over again.
func TestAdoptRelayedScrape(t *testing.T) {
	_, e, own := steadyEndpoint(t)
	own.KVCapacity, own.MaxLoRA = 4096, 4
	at := own.At
	// Sends after the own scrape: this proxy's at +10 and +40 ms, the
	// others' at +20 and +50 ms.
	for _, ms := range []int{10, 40} {
		e.Acquire(at.Add(time.Duration(ms) * time.Millisecond))
	}
	now := at.Add(60 * time.Millisecond)
	for _, ms := range []int{20, 50} {
		e.NoteOthersSend(at.Add(time.Duration(ms)*time.Millisecond).UnixNano(), now.UnixNano())
	}
	if got := e.Unseen(own, now); got != 4 {
		t.Fatalf("before: unseen %v, want 4 (2 own + 2 others' since the own scrape)", got)
	}

	relayed := &endpoints.Metrics{Waiting: 3, Running: 7, KVCacheUsage: 0.5, At: at.Add(30 * time.Millisecond)}
	if !e.Adopt(relayed) {
		t.Fatal("a relayed scrape newer than the held one was not adopted")
	}
	m := e.Metrics()
	if m != relayed || !m.Relayed || m.Waiting != 3 || m.KVCapacity != 4096 || m.MaxLoRA != 4 {
		t.Fatalf("held metrics after Adopt: %+v", m)
	}
	if got := e.Unseen(m, now); got != 2 {
		t.Fatalf("after: unseen %v, want 2 (own at +40 ms, others' at +50 ms; the scrape shows the earlier ones)", got)
	}

	if e.Adopt(&endpoints.Metrics{Waiting: 99, At: at.Add(20 * time.Millisecond)}) {
		t.Fatal("an older relayed scrape was adopted")
	}
	if e.Metrics().Waiting != 3 {
		t.Fatalf("an older relayed scrape changed the metrics: %+v", e.Metrics())
	}

	next := &endpoints.Metrics{Waiting: 1, At: now}
	e.SetMetrics(next)
	if m := e.Metrics(); m != next || m.Relayed {
		t.Fatalf("the proxy's own next scrape: held %+v", m)
	}
	if got := e.Unseen(next, now); got != 0 {
		t.Fatalf("after the own scrape: unseen %v, want 0", got)
	}
}

// TestAdoptCountsAtMostTheRememberedSends: more sends since a relayed
// scrape than an endpoint remembers count as the number it remembers — a
// bounded under-count, never a crash or an overflow.
func TestAdoptCountsAtMostTheRememberedSends(t *testing.T) {
	e := endpoints.New(endpoints.Spec{Address: "10.0.0.1:8000"})
	at := time.Unix(1000, 0)
	e.SetMetrics(&endpoints.Metrics{At: at})
	for i := range 1000 {
		e.Acquire(at.Add(time.Duration(i+1) * time.Microsecond))
	}
	m := &endpoints.Metrics{At: at.Add(time.Nanosecond)}
	e.Adopt(m)
	if got := e.Unseen(m, at.Add(time.Second)); got < 32 || got > 1000 {
		t.Fatalf("unseen %v after 1000 sends since the relayed scrape", got)
	}
}
