package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestProxyMetrics(t *testing.T) {
	be := modelServer(t)
	m, port := foodReviewPool(t, be)
	postChats(t, port,
		`{"model":"food-review","messages":[]}`,
		`{"model":"food-review","messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"food-review"}`, // 400
	)
	labels := `{model_name="food-review",target_model_name="food-review-lora"}`
	checkMetrics(t, m,
		`inference_objective_request_total`+labels+` 2`,
		`inference_objective_input_tokens_sum`+labels+` 14`,
		`inference_objective_output_tokens_sum`+labels+` 6`,
		`inference_objective_normalized_time_per_output_token_seconds_count`+labels+` 2`,
		`infergate_proxy_time_to_first_token_seconds_count`+labels+` 2`,
		`infergate_proxy_time_per_output_token_seconds_count`+labels+` 1`,
		`inference_objective_request_duration_seconds_count`+labels+` 2`,
		`inference_objective_running_requests{model_name="food-review"} 0`,
		`inference_objective_request_error_total{error_code="400",model_name="food-review",target_model_name="food-review"} 1`,
		`inference_pool_ready_pods{name="ns/pool"} 1`,
		`inference_pool_average_queue_size{name="ns/pool"}`,
		`inference_extension_scheduler_e2e_duration_seconds_count 2`,
		`infergate_proxy_requests_total{backend="ns/pool",code="200",route="ns/r"} 2`,
		`infergate_proxy_requests_total{backend="ns/pool",code="400",route="ns/r"} 1`,
		`infergate_proxy_endpoint_requests_total{endpoint="`+addr(be)+`",pod="ns/`+addr(be)+`"} 2`,
		`infergate_proxy_endpoint_in_flight{endpoint="`+addr(be)+`",pod="ns/`+addr(be)+`"} 0`,
		`infergate_proxy_endpoint_ejected{endpoint="`+addr(be)+`",pod="ns/`+addr(be)+`"} 0`,
	)
}

// TestProxyMetricsService: a model server behind a plain Service (no pool)
// gets the same per-model usage metrics from its JSON and SSE responses.
func TestProxyMetricsService(t *testing.T) {
	be := modelServer(t)
	m, port := serviceAt(t, be)
	postChats(t, port,
		`{"model":"food-review","messages":[]}`,
		`{"model":"food-review","messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
	)
	labels := `{model_name="food-review",target_model_name="food-review"}`
	checkMetrics(t, m,
		`inference_objective_request_total`+labels+` 2`,
		`inference_objective_input_tokens_sum`+labels+` 14`,
		`inference_objective_output_tokens_sum`+labels+` 6`,
		`infergate_proxy_time_to_first_token_seconds_count`+labels+` 2`,
	)
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
