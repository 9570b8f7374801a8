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
	es[0].Acquire(time.Now())
	es[0].Acquire(time.Now())
	es[2].Acquire(time.Now())
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
