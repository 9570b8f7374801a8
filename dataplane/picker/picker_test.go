package picker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

func eps(n int) []*endpoints.Endpoint {
	out := make([]*endpoints.Endpoint, n)
	for i := range out {
		out[i] = endpoints.New(endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)})
	}
	return out
}

func TestLeastInFlight(t *testing.T) {
	es := eps(3)
	es[0].Acquire()
	es[0].Acquire()
	es[2].Acquire()
	got, err := picker.LeastInFlight{}.Pick(&picker.Request{}, es)
	if err != nil || got != es[1] {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := (picker.LeastInFlight{}).Pick(&picker.Request{}, nil); err != picker.ErrNoEndpoint {
		t.Fatalf("empty: %v", err)
	}
	// Ties are spread over all tied endpoints.
	es = eps(4)
	seen := map[*endpoints.Endpoint]int{}
	for range 400 {
		e, _ := picker.LeastInFlight{}.Pick(&picker.Request{}, es)
		seen[e]++
	}
	if len(seen) != 4 {
		t.Fatalf("tie-break reached %d of 4 endpoints", len(seen))
	}
}

func TestLeastQueue(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &picker.LeastQueue{Now: func() time.Time { return now }}
	es := eps(3)
	es[0].SetMetrics(&endpoints.Metrics{Waiting: 4, At: now})
	es[1].SetMetrics(&endpoints.Metrics{Waiting: 1, At: now})
	es[2].SetMetrics(&endpoints.Metrics{Waiting: 0, At: now.Add(-time.Second)}) // stale
	if got, _ := p.Pick(&picker.Request{}, es); got != es[1] {
		t.Fatalf("want shortest fresh queue, got %s", got.Address)
	}
	// Own in-flight requests count on top of the scraped queue.
	for range 4 {
		es[1].Acquire()
	}
	if got, _ := p.Pick(&picker.Request{}, es); got != es[0] {
		t.Fatalf("want es[0] (4+0 < 1+4), got %s", got.Address)
	}
	// Without fresh metrics anywhere, least in-flight keeps the pool serving.
	now = now.Add(time.Hour)
	if got, _ := p.Pick(&picker.Request{}, es); got != es[2] && got != es[0] {
		t.Fatalf("want an endpoint without in-flight requests, got %s", got.Address)
	}
}

func BenchmarkLeastQueue64(b *testing.B) {
	es := eps(64)
	now := time.Now()
	for i, e := range es {
		e.SetMetrics(&endpoints.Metrics{Waiting: float64(i % 7), At: now})
	}
	p := &picker.LeastQueue{StaleAfter: time.Hour}
	req := &picker.Request{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Pick(req, es); err != nil {
			b.Fatal(err)
		}
	}
}
