package modelsim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
)

// testScale runs simulated time 100× faster than the wall clock.
const testScale = 0.01

func startFleet(t testing.TB, fc FleetConfig) *Fleet {
	t.Helper()
	if len(fc.Listen) == 0 && fc.Replicas == 0 {
		fc.Listen = []string{"127.0.0.1:0"}
	}
	if fc.TimeScale == 0 {
		fc.TimeScale = testScale
	}
	f, err := StartFleet(context.Background(), fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func client(r *Replica) openai.Client {
	return openai.NewClient(option.WithBaseURL(r.URL()+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func post(t testing.TB, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func scrape(t testing.TB, r *Replica) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(r.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(prommodel.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// single returns the only sample of family name, failing if absent.
func single(t testing.TB, mfs map[string]*dto.MetricFamily, name string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) == 0 {
		t.Fatalf("metric %s missing", name)
	}
	return mf.GetMetric()[0]
}
