package metrics

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestMetricsExposition(t *testing.T) {
	m := New(func() xds.Stats {
		return xds.Stats{ConnectedProxies: 3, SnapshotUpdates: 7, ProxyCountUpdates: 5, Acks: 11, Nacks: 2}
	})
	m.Translated(4*time.Millisecond, map[string]int{"default/gw": 12}, nil)
	m.Translated(2*time.Millisecond, map[string]int{"default/gw": 13}, errors.New("boom"))
	m.OnNack("default/gw", "node-1", snapshotv1.TypeRoute, "bad regex")
	m.OnSynced("default/gw", "node-1", "v1", 30*time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok || len(f.Metric) == 0 {
			t.Fatalf("metric %s missing", name)
		}
		mt := f.Metric[0]
		switch {
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Histogram != nil:
			return float64(mt.Histogram.GetSampleCount())
		}
		t.Fatalf("metric %s has no value", name)
		return 0
	}
	for name, want := range map[string]float64{
		"infergate_controlplane_connected_proxies":          3,
		"infergate_controlplane_snapshot_pushes_total":      7,
		"infergate_controlplane_proxy_count_pushes_total":   5,
		"infergate_controlplane_xds_acks_total":             11,
		"infergate_controlplane_xds_nacks_total":            2,
		"infergate_controlplane_translate_duration_seconds": 2,
		"infergate_controlplane_translate_errors_total":     1,
		"infergate_controlplane_gateway_resources":          13,
		"infergate_controlplane_xds_nacks_by_type_total":    1,
		"infergate_controlplane_change_to_ack_seconds":      1,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if l := families["infergate_controlplane_xds_nacks_by_type_total"].Metric[0].Label; len(l) != 2 || l[1].GetValue() != "Route" {
		t.Errorf("nack labels = %v, want gateway and type=Route", l)
	}
}
