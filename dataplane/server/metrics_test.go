package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestProxyMetrics(t *testing.T) {
	be := modelServer(t)
	m, port := foodReviewPool(t, be)
	postChats(t, port,
		`{"model":"food-review","messages":[]}`,
		`{"model":"food-review","messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"food-review"}`, // 400
	)
	text := scrapeMetrics(t, m)
	labels := `{model_name="food-review",target_model_name="food-review-lora"}`
	for _, want := range []string{
		`inference_objective_request_total` + labels + ` 2`,
		`inference_objective_input_tokens_sum` + labels + ` 14`,
		`inference_objective_output_tokens_sum` + labels + ` 6`,
		`inference_objective_normalized_time_per_output_token_seconds_count` + labels + ` 2`,
		`infergate_proxy_time_to_first_token_seconds_count` + labels + ` 2`,
		`infergate_proxy_time_per_output_token_seconds_count` + labels + ` 1`,
		`inference_objective_request_duration_seconds_count` + labels + ` 2`,
		`inference_objective_running_requests{model_name="food-review"} 0`,
		`inference_objective_request_error_total{error_code="400",model_name="food-review",target_model_name="food-review"} 1`,
		`inference_pool_ready_pods{name="ns/pool"} 1`,
		`inference_pool_average_queue_size{name="ns/pool"}`,
		`inference_extension_scheduler_e2e_duration_seconds_count 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "inference") || strings.HasPrefix(l, "infergate") {
				t.Log(l)
			}
		}
	}
}

// TestProxyMetricsService: a model server behind a plain Service (no pool)
// gets the same per-model usage metrics from its JSON and SSE responses.
func TestProxyMetricsService(t *testing.T) {
	be := modelServer(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc}))
	postChats(t, port,
		`{"model":"food-review","messages":[]}`,
		`{"model":"food-review","messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
	)
	text := scrapeMetrics(t, m)
	labels := `{model_name="food-review",target_model_name="food-review"}`
	for _, want := range []string{
		`inference_objective_request_total` + labels + ` 2`,
		`inference_objective_input_tokens_sum` + labels + ` 14`,
		`inference_objective_output_tokens_sum` + labels + ` 6`,
		`infergate_proxy_time_to_first_token_seconds_count` + labels + ` 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// postChats sends each body to the listener's chat completions endpoint and
// reads the response whole.
func postChats(t *testing.T, port uint32, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		resp, err := http.Post(url(port, "/v1/chat/completions"), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
