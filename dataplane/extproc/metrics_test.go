package extproc

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsSharedRegistry: two clients on one registry share its series
// instead of panicking.
func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewClient(slog.New(slog.DiscardHandler), Options{Registerer: reg})
	b := NewClient(slog.New(slog.DiscardHandler), Options{Registerer: reg})
	if a.metrics.requests != b.metrics.requests {
		t.Fatal("the second client registered its own series")
	}
}
