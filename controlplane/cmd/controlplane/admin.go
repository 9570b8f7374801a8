package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/controlplane/metrics"
)

// serveAdmin serves /metrics, /healthz and /readyz on addr, and
// /debug/pprof/ too when addr is loopback (the chart binds the admin port
// on the pod IP for probes; profiles are not for the pod network). ready
// reports whether the first translation has been pushed.
func serveAdmin(ctx context.Context, addr string, m *metrics.Metrics, ready *atomic.Bool, logger *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	loopback := isLoopback(lis.Addr())
	if !loopback {
		logger.Info("admin port off loopback: serving metrics and health there, pprof only on --pprof-address", "address", lis.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "waiting for the first translation", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if loopback {
		mountPprof(mux)
	}
	return serve(ctx, lis, mux, "admin (metrics, health)", logger)
}

// servePprof serves only /debug/pprof/ on addr, which must be loopback.
func servePprof(ctx context.Context, addr string, logger *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if !isLoopback(lis.Addr()) {
		lis.Close()
		return fmt.Errorf("--pprof-address %s: profiles are served on loopback only", addr)
	}
	mux := http.NewServeMux()
	mountPprof(mux)
	return serve(ctx, lis, mux, "pprof", logger)
}

func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

func serve(ctx context.Context, lis net.Listener, mux *http.ServeMux, what string, logger *slog.Logger) error {
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	logger.Info("serving "+what, "address", lis.Addr().String())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
