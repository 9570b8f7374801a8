package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// seen is a backend that answers status and records the last request's
// model and X-To header.
// (POSTs only: pools' endpoints are also scraped for metrics.)
type seen struct {
	hits       atomic.Int32
	model, hdr atomic.Value
}

func (s *seen) server(t *testing.T, status int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r) // the proxy's metrics scrapes
			return
		}
		var body struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.hits.Add(1)
		s.model.Store(body.Model)
		s.hdr.Store(strings.Join(r.Header.Values("X-To"), ","))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"model":%q,"usage":{"prompt_tokens":3,"completion_tokens":2}}`, body.Model)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func toHeader(v string) []*snapshotv1.Filter {
	return []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_RequestHeaderModifier{
		RequestHeaderModifier: hdrMod(nil, map[string]string{"x-to": v})}}}
}

func TestRetryMovesToAnotherBackendRef(t *testing.T) {
	var a, b seen
	var aborts, after atomic.Int32
	// The pool rewrites the model and always fails; the Service behind
	// the second backendRef works.
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(a.server(t, 503))}}
	svc := backendSpec{name: "svc", addrs: []string{addr(b.server(t, 200))}}
	empty := backendSpec{name: "empty"}
	abort := backendSpec{name: "aborting", addrs: []string{addr(aborting(t, &aborts))}}
	fine := backendSpec{name: "fine", addrs: []string{addr(counter(t, 200, &after))}}

	withRetry := func(rt *snapshotv1.Route) *snapshotv1.Route {
		rt.Retry = &snapshotv1.Retry{Attempts: 2, Codes: []uint32{503}, BackoffMs: 1}
		return rt
	}
	split := withRetry(route("split", "/split", ref(pool, 99), ref(svc, 1)))
	split.Backends[0].Filters = toHeader("pool")
	split.Backends[1].Filters = append(toHeader("svc"), &snapshotv1.Filter{Kind: &snapshotv1.Filter_ResponseHeaderModifier{
		ResponseHeaderModifier: hdrMod(map[string]string{"x-served-by": "svc"}, nil)}})
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{
		split,
		withRetry(route("empty", "/empty", ref(empty, 99), ref(svc, 1))),
		withRetry(route("started", "/started", ref(abort, 99), ref(fine, 1))),
		route("once", "/once", ref(pool, 99), ref(svc, 1)),
	}, []backendSpec{pool, svc, empty, abort, fine},
		&snapshotv1.ModelRule{Name: gw + "/InferenceModel/ns/m", Pool: pool.resourceName(), ModelName: "m",
			Targets: []*snapshotv1.TargetModel{{Name: "m-lora", Weight: 1}}}))

	post := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(url(port, path), "application/json", strings.NewReader(`{"model":"m","prompt":"hi"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	t.Run("failed backendRef is not tried again", func(t *testing.T) {
		poolTried := 0
		for range 30 {
			a.hits.Store(0)
			b.hits.Store(0)
			resp, body := post("/split")
			if resp.StatusCode != 200 || body != `{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":2}}` {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if ah, bh := a.hits.Load(), b.hits.Load(); ah > 1 || bh != 1 {
				t.Fatalf("pool tried %d times, service %d", ah, bh)
			}
			if a.hits.Load() == 1 {
				poolTried++
				// Each backendRef got its own request: the pool the
				// rewritten model and its header, the Service the client's.
				if a.model.Load() != "m-lora" || a.hdr.Load() != "pool" {
					t.Errorf("pool saw model %v header %v", a.model.Load(), a.hdr.Load())
				}
			}
			if b.model.Load() != "m" || b.hdr.Load() != "svc" || resp.Header.Get("X-Served-By") != "svc" {
				t.Fatalf("service saw model %v header %v; response header %q", b.model.Load(), b.hdr.Load(), resp.Header.Get("X-Served-By"))
			}
		}
		if poolTried < 20 {
			t.Errorf("the weight-99 pool was tried first only %d of 30 times", poolTried)
		}
	})
	t.Run("backendRef without endpoints is passed over", func(t *testing.T) {
		for range 10 {
			if resp, body := post("/empty"); resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}
	})
	t.Run("no retry, no move", func(t *testing.T) {
		codes := map[int]int{}
		for range 20 {
			resp, _ := post("/once")
			codes[resp.StatusCode]++
		}
		if codes[503] < 10 {
			t.Errorf("without retries a failing backendRef's answer must reach the client: %v", codes)
		}
	})
	t.Run("never after the client saw the response", func(t *testing.T) {
		for range 10 {
			aborts.Store(0)
			after.Store(0)
			resp, err := http.Post(url(port, "/started"), "application/json", strings.NewReader(`{"model":"m"}`))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if n, f := aborts.Load(), after.Load(); n+f != 1 {
				t.Fatalf("aborting backend hit %d times, other backendRef %d: duplicated", n, f)
			}
		}
	})

	// The outcome counts under the target that answered; running goes
	// back to zero.
	text := checkMetrics(t, m,
		`inference_objective_running_requests{model_name="m"} 0`,
		`inference_objective_request_duration_seconds_count{model_name="m",target_model_name="m"}`,
	)
	if !strings.Contains(text, `inference_objective_request_duration_seconds_count{model_name="m",target_model_name="m-lora"} 0`) {
		t.Errorf("a success counted under the target that failed")
	}
}
