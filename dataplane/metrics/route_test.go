package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRouteCounts: requests count per route, backend and status; a client
// gone before an answer is 499, a cut stream stream_cut whatever its
// status; counting a known status allocates nothing.
func TestRouteCounts(t *testing.T) {
	p := New()
	s := p.Route("ns/chat", "ns/pool")
	s.Count(200, false)
	s.Count(200, false)
	s.Count(0, false)
	s.Count(200, true)
	p.Route("ns/chat", "ns/svc").Count(503, false)
	want := `
# HELP infergate_proxy_requests_total Requests by HTTPRoute (namespace/name), backend (the InferencePool or Service they were sent to) and the status the client got (499: the client went away first; stream_cut: the response broke off after it started). Per proxy: aggregate with sum.
# TYPE infergate_proxy_requests_total counter
infergate_proxy_requests_total{backend="ns/pool",code="200",route="ns/chat"} 2
infergate_proxy_requests_total{backend="ns/pool",code="499",route="ns/chat"} 1
infergate_proxy_requests_total{backend="ns/pool",code="stream_cut",route="ns/chat"} 1
infergate_proxy_requests_total{backend="ns/svc",code="503",route="ns/chat"} 1
`
	if err := testutil.GatherAndCompare(p.Registry(), strings.NewReader(want), "infergate_proxy_requests_total"); err != nil {
		t.Fatal(err)
	}
	if p.Route("ns/chat", "ns/pool") != s {
		t.Fatal("a pair's series is not reused")
	}
	if n := testing.AllocsPerRun(100, func() { p.Route("ns/chat", "ns/pool").Count(200, false) }); n != 0 {
		t.Errorf("counting allocates %v times", n)
	}
}
