// Package server runs the proxy's listeners. A Manager binds the ports a
// compiled config names, closes the ones it no longer names, and swaps the
// config atomically: each request loads the current state once and finishes
// on it, so an Apply never disturbs requests already in flight.
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
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/router"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/dataplane/waitqueue"
)

// Options configure a Manager. Zero values take the defaults.
type Options struct {
	// BindAddress is the IP listeners bind to (default "0.0.0.0").
	BindAddress string
	// MaxBodyBytes limits JSON request bodies read for their model
	// (default openai.DefaultMaxBodyBytes); larger bodies get 413.
	MaxBodyBytes int64
	// HeaderReadTimeout bounds reading a request's headers and
	// BodyReadTimeout its body (defaults 30 s and 60 s): slow clients
	// (slowloris) cannot hold connections open. MaxHeaderBytes limits the
	// request headers (default 64 KiB; larger get 431).
	HeaderReadTimeout time.Duration
	BodyReadTimeout   time.Duration
	MaxHeaderBytes    int
	// DrainTimeout bounds how long a removed listener waits for its
	// requests before its connections are closed (default 30 s).
	DrainTimeout time.Duration
	Endpoints    endpoints.Options
	Upstream     upstream.Options
	// PickerFor returns the picker of a backend; it is called for every
	// backend on each Apply, so a picker may be built from the backend's
	// profile (Backend.Raw.Picker). Default: each pool's declarative
	// profile (picker.Schedulers, kept across config versions), least
	// in-flight for Services. Benchmarks set it to compare strategies.
	PickerFor func(b *config.Backend) picker.Picker
	// Metrics receives the request and pool metrics (default: a fresh
	// metrics.Proxy, served by AdminHandler at /metrics).
	Metrics *metrics.Proxy
	// ModelListTTL is how long a backend's /v1/models answer is reused
	// for GET /v1/models (default 30 s; refreshed in the background after
	// it), ModelListTimeout how long asking a backend may take (default
	// 2 s; a backend that does not answer in time is left out).
	ModelListTTL     time.Duration
	ModelListTimeout time.Duration
	// HTTP1Server selects the server for HTTP/1 connections (default
	// http1.Lean; HTTP/2 connections are served by net/http either way).
	HTTP1Server http1.Mode
}

// pickers returns every backend's picker (see Options.PickerFor); a pool
// profile naming an unknown plugin is a config error.
func (m *Manager) pickers(cfg *config.Config) (map[string]picker.Picker, error) {
	out := make(map[string]picker.Picker, len(cfg.Backends))
	for name, b := range cfg.Backends {
		switch {
		case m.opts.PickerFor != nil:
			out[name] = m.opts.PickerFor(b)
		case !b.IsPool():
			out[name] = picker.LeastInFlight{}
		default:
			s, err := m.scheds.For(b.Name, b.Raw.GetPicker())
			if err != nil {
				return nil, fmt.Errorf("backend %q: picker profile: %w", b.Name, err)
			}
			out[name] = s
		}
	}
	return out, nil
}

// Manager owns the listeners, endpoint state and the current config.
type Manager struct {
	logger *slog.Logger
	opts   Options
	reg    *endpoints.Registry
	up     *upstream.Upstream
	// scheds keeps each pool's scheduler (and its prefix index) across
	// config versions while the pool's profile is unchanged.
	scheds *picker.Schedulers
	// queues keeps each pool's wait queue (and who waits in it) across
	// config versions.
	queues *waitqueue.Set

	state atomic.Pointer[state]

	mu        sync.Mutex // serialises Apply and Close
	listeners map[uint32]*listener
	closed    bool
	drains    sync.WaitGroup

	mirrorSem chan struct{}
	mirrors   sync.WaitGroup
	models    *modelCache
	metrics   *metrics.Proxy
}

// state is everything a request needs, immutable once published.
type state struct {
	cfg      *config.Config
	ports    map[uint32]*portState
	backends map[string]*backendState
	// queuesOf lists the wait queues of the pools each endpoint serves,
	// kicked when the endpoint's metrics are scraped.
	queuesOf map[*endpoints.Endpoint][]*waitqueue.Queue
}

type portState struct {
	router *router.Router
	certs  portCerts // HTTPS ports only
	// clientTLS is the handshake config of an HTTPS port that checks
	// client certificates; nil keeps the listener's own.
	clientTLS *tls.Config
}

type backendState struct {
	cfg     *config.Backend
	eps     []*endpoints.Endpoint
	proxies map[*endpoints.Endpoint]http.Handler
	picker  picker.Picker
	// queue is the pool's wait queue, nil when it has none.
	queue *waitqueue.Queue
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
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = openai.DefaultMaxBodyBytes
	}
	if opts.HeaderReadTimeout <= 0 {
		opts.HeaderReadTimeout = 30 * time.Second
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = 60 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.HTTP1Server == "" {
		opts.HTTP1Server = http1.Lean
	}
	up := upstream.New(logger, opts.Upstream)
	m := &Manager{
		logger:    logger,
		opts:      opts,
		up:        up,
		models:    newModelCache(logger, up, opts.ModelListTTL, opts.ModelListTimeout),
		scheds:    picker.NewSchedulers(),
		queues:    waitqueue.NewSet(queueObserver{opts.Metrics}),
		listeners: map[uint32]*listener{},
		mirrorSem: make(chan struct{}, maxMirrorsInFlight),
		metrics:   opts.Metrics,
	}
	epOpts := opts.Endpoints
	if next := epOpts.OnScrape; next != nil {
		epOpts.OnScrape = func(ep *endpoints.Endpoint) { m.onScrape(ep); next(ep) }
	} else {
		epOpts.OnScrape = m.onScrape
	}
	m.reg = endpoints.NewRegistry(logger, epOpts)
	m.metrics.SetPools(m.poolStats)
	m.metrics.SetQueues(func(f func(string, int32, int)) {
		m.queues.Each(func(pool string, q *waitqueue.Queue) {
			q.Lengths(func(p int32, n int) { f(pool, p, n) })
		})
	})
	return m
}

// Metrics returns the proxy metrics.
func (m *Manager) Metrics() *metrics.Proxy { return m.metrics }

// poolStats summarises every InferencePool of the current config for the
// inference_pool_* gauges.
func (m *Manager) poolStats() []metrics.PoolStat {
	st := m.state.Load()
	if st == nil {
		return nil
	}
	var out []metrics.PoolStat
	for _, bs := range st.backends {
		if !bs.cfg.IsPool() {
			continue
		}
		ps := metrics.PoolStat{Name: bs.cfg.Source, ReadyPods: len(bs.eps)}
		n := 0
		for _, e := range bs.eps {
			if em := e.Metrics(); em != nil {
				ps.AvgKVCache += em.KVCacheUsage
				ps.AvgQueue += em.Waiting
				n++
			}
		}
		if n > 0 {
			ps.AvgKVCache /= float64(n)
			ps.AvgQueue /= float64(n)
		}
		out = append(out, ps)
	}
	return out
}

// Ready reports whether a config has been applied.
func (m *Manager) Ready() bool { return m.state.Load() != nil }

// Config returns the config being served, or nil before the first Apply.
func (m *Manager) Config() *config.Config {
	if st := m.state.Load(); st != nil {
		return st.cfg
	}
	return nil
}

// Endpoints returns the registry of endpoint state.
func (m *Manager) Endpoints() *endpoints.Registry { return m.reg }

// Schedulers returns the pools' schedulers (for the fleet-key exchange,
// dataplane/fleetkeys); unused when Options.PickerFor is set.
func (m *Manager) Schedulers() *picker.Schedulers { return m.scheds }

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
	// Pickers first: a bad pool profile is a config error (NACK), caught
	// before anything changes.
	pickers, err := m.pickers(cfg)
	if err != nil {
		return err
	}
	if err := checkQueues(cfg); err != nil {
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
	st := m.build(cfg, pickers)
	m.state.Store(st)
	m.models.retain(cfg)
	m.scheds.Retain(func(pool string) bool { b, ok := cfg.Backends[pool]; return ok && b.IsPool() })
	m.queues.Retain(func(pool string) bool { b, ok := cfg.Backends[pool]; return ok && b.IsPool() })
	for _, l := range added {
		m.listeners[l.port] = l
		go m.serve(l)
	}
	for port, l := range m.listeners {
		if _, ok := st.ports[port]; !ok {
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
		Handler:           &portHandler{m: m, port: port},
		ReadHeaderTimeout: m.opts.HeaderReadTimeout,
		MaxHeaderBytes:    m.opts.MaxHeaderBytes,
		IdleTimeout:       5 * time.Minute,
		Protocols:         protos,
		ErrorLog:          slog.NewLogLogger(m.logger.Handler(), slog.LevelDebug),
	}
	if isTLS {
		l.srv.TLSConfig = m.serverTLS(port)
		l.srv.TLSConfig.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			// Client certificates are asked for as the current config
			// says, so a changed CA or mode applies without rebinding.
			if st := m.state.Load(); st != nil {
				if ps := st.ports[port]; ps != nil {
					return ps.clientTLS, nil
				}
			}
			return nil, nil
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

// serverTLS is the handshake config of HTTPS port port.
func (m *Manager) serverTLS(port uint32) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// h2 listed, so net/http serves HTTP/2 on the TLS connections
		// the lean server hands it.
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.certificate(port, hello)
		},
	}
}

// certificate picks the certificate for an HTTPS handshake from the current
// config, so certificate changes apply without rebinding.
func (m *Manager) certificate(port uint32, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := m.state.Load()
	if st == nil {
		return nil, errors.New("no config")
	}
	if ps := st.ports[port]; ps != nil {
		if c := ps.certs.pick(ps.router, hello); c != nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no certificate for port %d", port)
}

// build derives the request-time state from cfg and brings the endpoint
// registry in line with it.
func (m *Manager) build(cfg *config.Config, pickers map[string]picker.Picker) *state {
	st := &state{cfg: cfg, ports: make(map[uint32]*portState, len(cfg.Ports)), backends: make(map[string]*backendState, len(cfg.Backends)),
		queuesOf: map[*endpoints.Endpoint][]*waitqueue.Queue{}}
	for _, p := range cfg.Ports {
		ps := &portState{router: router.New(p), certs: newPortCerts(p)}
		if p.ClientCAs != nil {
			ps.clientTLS = m.serverTLS(p.Port)
			ps.clientTLS.ClientCAs = p.ClientCAs
			ps.clientTLS.ClientAuth = tls.RequireAndVerifyClientCert
			if p.ClientValidation == "AllowInsecureFallback" {
				// Asked for, passed to nobody, never required: the
				// backend is left to decide (the mode's documented risk).
				ps.clientTLS.ClientAuth = tls.RequestClientCert
			}
		}
		st.ports[p.Port] = ps
	}
	var specs []endpoints.Spec
	for _, b := range cfg.Backends {
		for _, e := range b.Endpoints {
			specs = append(specs, endpoints.Spec{Address: e.Address, MetricsAddress: e.MetricsAddress,
				Pod: e.Pod, EngineType: e.EngineType, Scrape: b.IsPool()})
		}
	}
	eps := m.reg.Sync(specs)
	tlsKeys := map[string]bool{}
	for name, b := range cfg.Backends {
		bs := &backendState{cfg: b, proxies: make(map[*endpoints.Endpoint]http.Handler, len(b.Endpoints)), picker: pickers[name]}
		for _, e := range b.Endpoints {
			ep := eps[e.Address]
			bs.eps = append(bs.eps, ep)
			switch t := b.TLS; {
			case t == nil:
				bs.proxies[ep] = m.up.Proxy(ep.Address, b.H2C, ep.ServedHeader())
			case t.Invalid != "":
				bs.proxies[ep] = unusableTLS(b, m.logger)
			default:
				tlsKeys[t.Key] = true
				bs.proxies[ep] = m.up.ProxyTLS(ep.Address, t.Config, t.Key, ep.ServedHeader())
			}
		}
		if b.IsPool() {
			if bs.queue = m.queues.For(name, b.Source, b.Raw.GetPicker().GetQueue()); bs.queue != nil {
				eps := bs.eps
				bs.queue.SetHeadroom(func() int { return picker.Headroom(eps, time.Now()) })
				for _, ep := range bs.eps {
					st.queuesOf[ep] = append(st.queuesOf[ep], bs.queue)
				}
			}
		}
		st.backends[name] = bs
	}
	m.up.RetainTLS(tlsKeys)
	return st
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
	m.queues.Retain(func(string) bool { return false })
	var errs []error
	for _, l := range ls {
		if err := l.shutdown(ctx); err != nil {
			l.close()
			errs = append(errs, err)
		}
	}
	m.drains.Wait()
	m.mirrors.Wait()
	m.models.close()
	m.reg.Close()
	m.up.Close()
	return errors.Join(errs...)
}
