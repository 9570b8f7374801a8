package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/waitqueue"
)

// AdminHandler serves the proxy's admin API:
//
//	/healthz    200 while the process runs
//	/ready      200 once a config is applied, 503 before
//	/config     the compiled config as JSON (503 before the first), with
//	            the scrape schedule ("scraping": proxy count, interval)
//	/endpoints  per-endpoint state: scraped metrics and their age,
//	            in-flight requests, last scrape error
//	/queues     the pools' wait queues: bounds, waiting requests and
//	            bytes, headroom, and per priority band the waiting
//	            requests, fairness flows and the oldest wait
//	/metrics    Prometheus metrics (requests, tokens, TTFT, pools, picker)
//	/explain    POST a request (pipeline.ExplainRequest as JSON): how it
//	            would be routed and which endpoint picked now, and what the
//	            picker sees of every candidate; nothing is sent
//	/decisions  the pools' recent picks explained, newest first (each pool
//	            keeps its last pipeline.DecisionRingSize, at most one per
//	            pipeline.DecisionEvery); ?pool=NAME for one pool, ?limit=N
func (m *Manager) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.pl.Metrics().Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !m.Ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "waiting for the first complete config"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "version": m.Config().Version})
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		cfg := m.Config()
		if cfg == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "no config yet"})
			return
		}
		writeJSON(w, http.StatusOK, struct {
			*config.Config
			Scraping endpoints.Schedule `json:"scraping"`
		}{cfg, m.pl.Endpoints().Schedule()})
	})
	mux.HandleFunc("GET /endpoints", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, m.pl.Endpoints().Statuses())
	})
	mux.HandleFunc("GET /queues", func(w http.ResponseWriter, _ *http.Request) {
		qs := m.pl.Queues().Statuses(time.Now())
		if qs == nil {
			qs = []waitqueue.Status{} // [] rather than null: no pool has a queue
		}
		writeJSON(w, http.StatusOK, qs)
	})
	mux.HandleFunc("POST /explain", m.serveExplain)
	mux.HandleFunc("GET /decisions", m.serveDecisions)
	return mux
}

// serveExplain answers POST /explain. The body is bounded like a client's
// (plus room for the envelope); a request it cannot explain gets 400 with
// the reason.
func (m *Manager) serveExplain(w http.ResponseWriter, r *http.Request) {
	var req pipeline.ExplainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, m.pl.MaxBodyBytes()*2+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "explain request: " + err.Error()})
		return
	}
	ex, err := m.pl.Explain(req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ex)
}

// serveDecisions answers GET /decisions[?pool=NAME][&limit=N].
func (m *Manager) serveDecisions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pool := q.Get("pool")
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("limit %q: want a count ≥ 0", v)})
			return
		}
		limit = n
	}
	if pool != "" && !m.pl.HasPool(pool) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no pool %q (name it as namespace/name)", pool)})
		return
	}
	writeJSON(w, http.StatusOK, m.pl.Decisions(pool, limit))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
