// Package server runs the proxy's listeners. A Manager binds the ports a
// compiled config names, closes the ones it no longer names, and swaps the
// config atomically: each request loads the current state once and finishes
// on it, so an Apply never disturbs requests already in flight. What happens
// to a request once its listener has it (route, filters, wait queue, pick,
// forward, retries, mirrors, /v1/models) is dataplane/pipeline; the tests
// here drive both through real listeners.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/pipeline"
)

// Options configure a Manager. Zero values take the defaults.
type Options struct {
	// BindAddress is the IP listeners bind to (default "0.0.0.0").
	BindAddress string
	// HeaderReadTimeout bounds reading a request's headers (default
	// 30 s): slow clients (slowloris) cannot hold connections open.
	// MaxHeaderBytes limits the request headers (default 64 KiB; larger
	// get 431).
	HeaderReadTimeout time.Duration
	MaxHeaderBytes    int
	// DrainTimeout bounds how long a removed listener waits for its
	// requests before its connections are closed (default 30 s).
	DrainTimeout time.Duration
	// HTTP1Server selects the server for HTTP/1 connections (default
	// http1.Lean; HTTP/2 connections are served by net/http either way).
	HTTP1Server http1.Mode

	// Pipeline configures the request path (body limits, upstream, picker,
	// endpoint scraping, metrics — served by AdminHandler at /metrics).
	Pipeline pipeline.Options
}

// Manager owns the listeners and the request pipeline they hand requests
// to.
type Manager struct {
	logger *slog.Logger
	opts   Options
	pl     *pipeline.Pipeline

	mu        sync.Mutex // serialises Apply and Close
	listeners map[uint32]*listener
	closed    bool
	drains    sync.WaitGroup
}

type listener struct {
	port uint32
	tls  bool
	ln   net.Listener
	// srv is net/http's server: all of the port's connections with
	// Options.HTTP1Server stdlib, the HTTP/2 ones under lean, which
	// serves the HTTP/1 ones.
	srv  *http.Server
	lean *http1.Server
}

func (l *listener) shutdown(ctx context.Context) error {
	if l.lean != nil {
		return l.lean.Shutdown(ctx)
	}
	return l.srv.Shutdown(ctx)
}

func (l *listener) close() {
	if l.lean != nil {
		l.lean.Close()
		return
	}
	l.srv.Close()
}

// New returns a Manager with no listeners; it serves nothing until the
// first Apply.
func New(logger *slog.Logger, opts Options) *Manager {
	if opts.BindAddress == "" {
		opts.BindAddress = "0.0.0.0"
	}
	if opts.HeaderReadTimeout <= 0 {
		opts.HeaderReadTimeout = 30 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.HTTP1Server == "" {
		opts.HTTP1Server = http1.Lean
	}
	return &Manager{
		logger:    logger,
		opts:      opts,
		pl:        pipeline.New(logger, opts.Pipeline),
		listeners: map[uint32]*listener{},
	}
}

// Metrics returns the proxy metrics.
func (m *Manager) Metrics() *metrics.Proxy { return m.pl.Metrics() }

// Ready reports whether a config has been applied.
func (m *Manager) Ready() bool { return m.pl.Ready() }

// Config returns the config being served, or nil before the first Apply.
func (m *Manager) Config() *config.Config { return m.pl.Config() }

// Endpoints returns the registry of endpoint state.
func (m *Manager) Endpoints() *endpoints.Registry { return m.pl.Endpoints() }

// Schedulers returns the pools' schedulers (for the fleet-key exchange,
// dataplane/fleetkeys); unused when Options.PickerFor is set.
func (m *Manager) Schedulers() *picker.Schedulers { return m.pl.Schedulers() }

// Addr returns the bound address of a config port, or nil.
func (m *Manager) Addr(port uint32) net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.listeners[port]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Apply serves cfg: it binds ports that appear, publishes the new config,
// then closes ports that disappeared (letting their requests finish). If a
// port cannot be bound, nothing changes and the previous config keeps
// serving.
func (m *Manager) Apply(cfg *config.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("server closed")
	}
	// Pickers first, built before anything changes.
	prep, err := m.pl.Prepare(cfg)
	if err != nil {
		return err
	}
	// Then bind: a failure must leave the old config fully in place.
	var added []*listener
	var replaced []*listener
	for _, p := range cfg.Ports {
		isTLS := p.Listeners[0].Protocol == "HTTPS"
		if old := m.listeners[p.Port]; old != nil {
			if old.tls == isTLS {
				continue
			}
			// The port changes protocol: it has to be rebound.
			replaced = append(replaced, old)
			old.ln.Close()
		}
		l, err := m.bind(p.Port, isTLS)
		if err != nil {
			for _, a := range added {
				a.ln.Close()
			}
			return err
		}
		added = append(added, l)
	}
	m.pl.Publish(prep)
	served := make(map[uint32]bool, len(cfg.Ports))
	for _, p := range cfg.Ports {
		served[p.Port] = true
	}
	for _, l := range added {
		m.listeners[l.port] = l
		go m.serve(l)
	}
	for port, l := range m.listeners {
		if !served[port] {
			delete(m.listeners, port)
			m.drain(l)
		}
	}
	for _, l := range replaced {
		m.drain(l)
	}
	m.logger.Info("config applied", "gateway", cfg.Gateway, "version", cfg.Version,
		"ports", len(cfg.Ports), "routes", len(cfg.Routes), "backends", len(cfg.Backends))
	return nil
}

func (m *Manager) bind(port uint32, isTLS bool) (*listener, error) {
	addr := net.JoinHostPort(m.opts.BindAddress, strconv.FormatUint(uint64(port), 10))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	l := &listener{port: port, tls: isTLS, ln: ln}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	if isTLS {
		protos.SetHTTP2(true)
	} else {
		// Clients may speak prior-knowledge HTTP/2 in clear text.
		protos.SetUnencryptedHTTP2(true)
	}
	l.srv = &http.Server{
		Handler:           m.pl.Handler(port),
		ReadHeaderTimeout: m.opts.HeaderReadTimeout,
		MaxHeaderBytes:    m.opts.MaxHeaderBytes,
		IdleTimeout:       5 * time.Minute,
		Protocols:         protos,
		ErrorLog:          slog.NewLogLogger(m.logger.Handler(), slog.LevelDebug),
	}
	if isTLS {
		l.srv.TLSConfig = m.pl.ServerTLS(port)
		l.srv.TLSConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			// Client certificates are asked for as the current config
			// says, so a changed CA or mode applies without rebinding.
			return m.pl.ClientTLS(port), nil
		}
	}
	if m.opts.HTTP1Server == http1.Lean {
		l.lean = &http1.Server{Std: l.srv, Logger: m.logger}
	}
	m.logger.Info("listening", "addr", ln.Addr().String(), "tls", isTLS, "http1", m.opts.HTTP1Server)
	return l, nil
}

func (m *Manager) serve(l *listener) {
	var err error
	switch {
	case l.lean != nil:
		err = l.lean.Serve(l.ln)
	case l.tls:
		err = l.srv.ServeTLS(l.ln, "", "")
	default:
		err = l.srv.Serve(l.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		m.logger.Error("listener stopped", "port", l.port, "err", err)
	}
}

// drain stops accepting on l and lets its requests finish in the
// background, closing what remains after DrainTimeout.
func (m *Manager) drain(l *listener) {
	m.logger.Info("closing listener", "port", l.port)
	m.drains.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainTimeout)
		defer cancel()
		if err := l.shutdown(ctx); err != nil {
			l.close()
		}
	})
}

// Close stops every listener (waiting up to ctx for requests to finish),
// the scrapers and idle upstream connections.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	ls := m.listeners
	m.listeners = map[uint32]*listener{}
	m.mu.Unlock()
	// Whoever waits is sent on rather than held until the drain ends.
	m.pl.Release()
	var errs []error
	for _, l := range ls {
		if err := l.shutdown(ctx); err != nil {
			l.close()
			errs = append(errs, err)
		}
	}
	m.drains.Wait()
	m.pl.Close()
	return errors.Join(errs...)
}
