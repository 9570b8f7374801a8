package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestHealthMux: the probe address answers /ready (failing while
// draining) and /healthz, and nothing of the admin API.
func TestHealthMux(t *testing.T) {
	admin := http.NewServeMux()
	var applied atomic.Bool
	admin.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !applied.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	admin.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	admin.HandleFunc("GET /config", func(http.ResponseWriter, *http.Request) {})
	var draining atomic.Bool
	h := healthMux(readyHandler(&draining, admin), admin)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	steps := []struct {
		name                string
		applied, draining   bool
		ready, healthz, cfg int
	}{
		{"before the first config", false, false, 503, 200, 404},
		{"config applied", true, false, 200, 200, 404},
		{"draining", true, true, 503, 200, 404},
	}
	for _, s := range steps {
		applied.Store(s.applied)
		draining.Store(s.draining)
		if got := get("/ready"); got != s.ready {
			t.Errorf("%s: /ready %d, want %d", s.name, got, s.ready)
		}
		if got := get("/healthz"); got != s.healthz {
			t.Errorf("%s: /healthz %d, want %d", s.name, got, s.healthz)
		}
		if got := get("/config"); got != s.cfg {
			t.Errorf("%s: /config %d, want %d (admin API on the probe address)", s.name, got, s.cfg)
		}
	}
}
