package modelsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// TestMetricsFaults: each metrics fault yields the broken /metrics it
// names, and the proxy's parser refuses every one of them (which is what
// the gateway's fault suite relies on).
func TestMetricsFaults(t *testing.T) {
	for _, fault := range MetricsFaults {
		t.Run(fault, func(t *testing.T) {
			f := startFleet(t, FleetConfig{Config: Config{MetricsFault: fault}})
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", f.Replicas()[0].URL()+"/metrics", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if fault == MetricsHanging {
				if !errors.Is(err, context.DeadlineExceeded) || len(body) == 0 {
					t.Fatalf("hanging: read %d bytes, %v; want part of a body, then nothing", len(body), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch fault {
			case MetricsOversized:
				if len(body) <= 5<<20 || !strings.Contains(string(body), "vllm:num_requests_waiting") {
					t.Fatalf("oversized: %d bytes", len(body))
				}
				return // parsing it whole is the bug the scrape limit prevents
			case MetricsNegative, MetricsNaN, MetricsInf:
				if !strings.Contains(string(body), "vllm:num_requests_running") {
					t.Fatal("the other families must stay")
				}
			}
			_, err = endpoints.ParseEngine(strings.NewReader(string(body)), "vllm")
			if err == nil {
				t.Fatalf("the proxy's parser accepted %s metrics", fault)
			}
			var inv *endpoints.InvalidError
			if fault != MetricsJunk && !errors.As(err, &inv) {
				t.Fatalf("%s: %v, want an out-of-domain error", fault, err)
			}
		})
	}
	if _, err := StartFleet(context.Background(), FleetConfig{Config: Config{MetricsFault: "bogus"}}); err == nil {
		t.Fatal("an unknown fault was accepted")
	}
}
