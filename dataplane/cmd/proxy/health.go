package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// readyHandler answers /ready: 503 from the moment the proxy starts
// draining, otherwise what next says (200 once a config is applied).
func readyHandler(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"draining"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// healthMux serves only the probes: it may listen on the pod's address,
// where the admin API (config, endpoint state) must not be reachable.
// Readiness is "a config is applied and not draining", not "a listener
// port is open", so a proxy whose Gateway has no valid listener (nothing
// to bind) still becomes Ready.
func healthMux(ready, admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ready", ready)
	mux.Handle("GET /healthz", admin)
	return mux
}

// serveHTTP serves h on lis in the background; the caller closes the
// returned server.
func serveHTTP(logger *slog.Logger, name string, lis net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(name+" server", "err", err)
		}
	}()
	return srv
}
