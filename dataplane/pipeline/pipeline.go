// Package pipeline is the proxy's request path: everything between a
// request arriving on a bound port and the model server's answer leaving
// it. Reading the body's model, matching the route (router), the rule's
// filters (filters.go: header modifiers, redirects, URL rewrites; cors.go),
// waiting in a saturated pool's queue (queue.go: admit), picking the
// endpoint (picker), forwarding with timeouts and retries (forward.go, with
// exchange.go holding back a retryable answer so the next attempt can go
// elsewhere, and call.go moving an attempt to another backendRef), request
// mirroring (mirror.go), reading usage and restoring the client's model in
// responses (inspect.go), and answering GET /v1/models (models.go).
//
// A Pipeline serves with a State derived from one compiled config and
// swapped atomically by Publish: each request loads the current state once
// and finishes on it. Binding ports is the listener manager's job
// (dataplane/server), which hands each port's requests to Handler.
package pipeline

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/router"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/dataplane/waitqueue"
	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Options configure a Pipeline. Zero values take the defaults.
type Options struct {
	// MaxBodyBytes limits JSON request bodies read for their model
	// (default openai.DefaultMaxBodyBytes); larger bodies get 413.
	MaxBodyBytes int64
	// BodyReadTimeout bounds reading a request's body (default 60 s): a
	// slow client (slowloris) cannot hold a connection open.
	BodyReadTimeout time.Duration
	Endpoints       endpoints.Options
	Upstream        upstream.Options
	// PickerFor returns the picker of a backend; it is called for every
	// backend on each Prepare, so a picker may be built from the backend's
	// profile (Backend.Raw.Picker). Default: each pool's declarative
	// profile (picker.Schedulers, kept across config versions), least
	// in-flight for Services. Benchmarks set it to compare strategies.
	PickerFor func(b *config.Backend) picker.Picker
	// Metrics receives the request and pool metrics (default: a fresh
	// metrics.Proxy).
	Metrics *metrics.Proxy
	// ModelListTTL is how long a backend's /v1/models answer is reused
	// for GET /v1/models (default 30 s; refreshed in the background after
	// it), ModelListTimeout how long asking a backend may take (default
	// 2 s; a backend that does not answer in time is left out).
	ModelListTTL     time.Duration
	ModelListTimeout time.Duration
	// FirstByteTimeout bounds how long a pool's endpoint may take to start
	// answering an attempt, StreamIdleTimeout how long it may then go
	// without sending anything (between stream events): a frozen model
	// server's requests end with 504, or a cut stream, and count against
	// it (ejection). A route's own timeouts (HTTPRoute timeouts.request or
	// backendRequest) replace the first-byte bound. Defaults
	// DefaultFirstByteTimeout and DefaultStreamIdleTimeout; negative turns
	// one off.
	FirstByteTimeout  time.Duration
	StreamIdleTimeout time.Duration
	// NotSentRetries is how many more attempts a request may take, on
	// other endpoints, after attempts that never reached a model server —
	// the connection was refused or reset before any byte went out —
	// whatever the route's retry policy (default DefaultNotSentRetries;
	// negative: none). Such a request cannot have been processed, so
	// sending it elsewhere is always safe.
	NotSentRetries int
	// BodyBudget bounds the bytes of all request bodies buffered at once
	// (default DefaultBodyBudget; negative: unbounded); a body that does
	// not fit gets 503.
	BodyBudget int64
	// PickerTimeout bounds each wait for an external endpoint picker's
	// answer when the pool does not set its own (default
	// extproc.DefaultTimeout).
	PickerTimeout time.Duration
	// Tracer records a span tree per request (see requestTrace); nil
	// turns tracing off.
	Tracer trace.Tracer
}

// Defaults of Options.
const (
	DefaultFirstByteTimeout  = 5 * time.Minute
	DefaultStreamIdleTimeout = 60 * time.Second
	DefaultNotSentRetries    = 2
	DefaultBodyBudget        = 1 << 30
)

// Pipeline serves requests with the current State. It owns what requests
// share across config versions: endpoint state, upstream connections, the
// pools' schedulers and wait queues, mirrors in flight and the model
// listing cache.
type Pipeline struct {
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

	mirrorSem chan struct{}
	mirrors   sync.WaitGroup
	models    *modelCache
	metrics   *metrics.Proxy
	// budget bounds the request bodies buffered at once.
	budget *openai.Budget
	// ext keeps the connections to pools' external endpoint pickers.
	ext *extproc.Client
	// decisions keeps the pools' recent pick decisions.
	decisions *decisions
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
	// ext is the pool's external endpoint picker, nil when the proxy
	// picks (picker above is then the only one; with ext it is the
	// FailOpen fallback).
	ext *extproc.Picker
}

// New returns a Pipeline with no config: Handler answers nothing until the
// first Publish.
func New(logger *slog.Logger, opts Options) *Pipeline {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = openai.DefaultMaxBodyBytes
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = 60 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	opts.FirstByteTimeout = orDefault(opts.FirstByteTimeout, DefaultFirstByteTimeout)
	opts.StreamIdleTimeout = orDefault(opts.StreamIdleTimeout, DefaultStreamIdleTimeout)
	opts.NotSentRetries = max(orDefault(opts.NotSentRetries, DefaultNotSentRetries), 0)
	opts.BodyBudget = orDefault(opts.BodyBudget, DefaultBodyBudget)
	up := upstream.New(logger, opts.Upstream)
	m := &Pipeline{
		logger:    logger,
		opts:      opts,
		up:        up,
		models:    newModelCache(logger, up, opts.ModelListTTL, opts.ModelListTimeout),
		scheds:    picker.NewSchedulers(),
		queues:    waitqueue.NewSet(queueObserver{opts.Metrics}),
		mirrorSem: make(chan struct{}, maxMirrorsInFlight),
		metrics:   opts.Metrics,
		budget:    openai.NewBudget(opts.BodyBudget),
		decisions: newDecisions(),
		ext: extproc.NewClient(logger, extproc.Options{Timeout: opts.PickerTimeout, MaxBodyBytes: int(opts.MaxBodyBytes),
			Registerer: opts.Metrics.Registry()}),
	}
	epOpts := opts.Endpoints
	if next := epOpts.OnScrape; next != nil {
		epOpts.OnScrape = func(ep *endpoints.Endpoint) { m.onScrape(ep); next(ep) }
	} else {
		epOpts.OnScrape = m.onScrape
	}
	m.reg = endpoints.NewRegistry(logger, epOpts)
	m.metrics.SetPools(m.poolStats)
	m.metrics.SetBodyBudget(m.budget)
	m.metrics.SetEndpoints(func() []metrics.EndpointStat {
		st := m.reg.Statuses()
		out := make([]metrics.EndpointStat, len(st))
		for i, s := range st {
			out[i] = metrics.EndpointStat{Address: s.Address, Pod: s.Pod, Sent: s.Sent, InFlight: s.InFlight, Ejected: s.EjectedForMs != nil}
		}
		return out
	})
	m.metrics.SetQueues(func(f func(string, int32, int)) {
		m.queues.Each(func(pool string, q *waitqueue.Queue) {
			q.Lengths(func(p int32, n int) { f(pool, p, n) })
		})
	})
	return m
}

// orDefault is v, or def when v is zero; negative values stay (they
// turn the option off).
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Metrics returns the proxy metrics.
func (m *Pipeline) Metrics() *metrics.Proxy { return m.metrics }

// Ready reports whether a config has been published.
func (m *Pipeline) Ready() bool { return m.state.Load() != nil }

// Config returns the config being served, or nil before the first Publish.
func (m *Pipeline) Config() *config.Config {
	if st := m.state.Load(); st != nil {
		return st.cfg
	}
	return nil
}

// Endpoints returns the registry of endpoint state.
func (m *Pipeline) Endpoints() *endpoints.Registry { return m.reg }

// Schedulers returns the pools' schedulers (for the fleet-key exchange,
// dataplane/fleetkeys); unused when Options.PickerFor is set.
func (m *Pipeline) Schedulers() *picker.Schedulers { return m.scheds }

// Queues returns the pools' wait queues.
func (m *Pipeline) Queues() *waitqueue.Set { return m.queues }

// Handler returns the handler of the requests bound port port receives.
func (m *Pipeline) Handler(port uint32) http.Handler { return &portHandler{m: m, port: port} }

// poolStats summarises every InferencePool of the current config for the
// inference_pool_* gauges.
func (m *Pipeline) poolStats() []metrics.PoolStat {
	st := m.state.Load()
	if st == nil {
		return nil
	}
	var out []metrics.PoolStat
	now := time.Now()
	for _, bs := range st.backends {
		if !bs.cfg.IsPool() {
			continue
		}
		ps := metrics.PoolStat{Name: bs.cfg.Source, ReadyPods: len(bs.eps), Saturation: picker.Saturation(bs.eps, now)}
		n := 0
		for _, e := range bs.eps {
			if em := e.Metrics(); em != nil {
				ps.AvgKVCache += em.KVCacheUsage
				ps.AvgQueue += em.Waiting
				n++
			}
			if em, fresh := e.Fresh(now, e.StaleAfter()); fresh {
				ps.Waiting += em.Waiting
				ps.Running += em.Running
			} else {
				ps.StalePods++
			}
		}
		if bs.queue != nil {
			ps.Queued, ps.QueuedBytes = bs.queue.Len(), bs.queue.Bytes()
		}
		if n > 0 {
			ps.AvgKVCache /= float64(n)
			ps.AvgQueue /= float64(n)
		}
		out = append(out, ps)
	}
	return out
}

// Prepared is a config readied by Prepare, to Publish.
type Prepared struct {
	cfg     *config.Config
	pickers map[string]picker.Picker
	// profiles are the profiles the pools run (a refused one replaced by
	// the default).
	profiles map[string]*snapshotv1.PickerProfile
}

// Prepare builds what cfg's backends pick with, without changing what is
// served. It does not fail for a pool's profile: one the profile contract
// (proto/pickerprofile) refuses runs the default profile instead, logged
// at error level. The control plane validates with the same contract and
// sends the default itself for a bad annotation, so this means version
// skew or a bug, and one pool's profile must not keep every other change
// of the gateway from being applied (a NACK would).
func (m *Pipeline) Prepare(cfg *config.Config) (*Prepared, error) {
	p := &Prepared{cfg: cfg, pickers: make(map[string]picker.Picker, len(cfg.Backends)),
		profiles: map[string]*snapshotv1.PickerProfile{}}
	for name, b := range cfg.Backends {
		switch {
		case m.opts.PickerFor != nil:
			p.pickers[name] = m.opts.PickerFor(b)
		case !b.IsPool():
			p.pickers[name] = picker.LeastInFlight{}
			continue
		}
		prof := b.Raw.GetPicker()
		if err := pickerprofile.Validate(prof); err != nil {
			m.logger.Error("pool picker profile refused; the pool runs the default profile", "backend", b.Name,
				"pool", b.Source, "err", err)
			prof = pickerprofile.Default()
		}
		p.profiles[name] = prof
		if m.opts.PickerFor != nil {
			continue
		}
		s, err := m.scheds.For(b.Name, prof)
		if err != nil {
			// A validated profile builds (picker's own test); this is a
			// bug, and the default still serves.
			m.logger.Error("pool picker profile does not build; the pool runs the default profile", "backend", b.Name,
				"pool", b.Source, "err", err)
			p.profiles[name] = pickerprofile.Default()
			if s, err = m.scheds.For(b.Name, nil); err != nil {
				return nil, fmt.Errorf("backend %q: default picker profile: %w", b.Name, err)
			}
		}
		p.pickers[name] = s
	}
	return p, nil
}

// Publish serves p's config from now on: it brings the endpoint registry in
// line with it, swaps the state, and drops what no pool of it uses.
func (m *Pipeline) Publish(p *Prepared) {
	cfg := p.cfg
	m.state.Store(m.build(cfg, p))
	m.models.retain(cfg)
	m.scheds.Retain(func(pool string) bool { b, ok := cfg.Backends[pool]; return ok && b.IsPool() })
	m.queues.Retain(func(pool string) bool { b, ok := cfg.Backends[pool]; return ok && b.IsPool() })
	m.decisions.retain(func(pool string) bool { b, ok := cfg.Backends[pool]; return ok && b.IsPool() })
}

// ServerTLS is the handshake config of HTTPS port port: certificates (and
// client certificate checks, see ClientTLS) come from the current config,
// so their changes apply without rebinding.
func (m *Pipeline) ServerTLS(port uint32) *tls.Config {
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

// ClientTLS returns the handshake config of HTTPS port port when the
// current config checks client certificates there, nil to keep
// ServerTLS's.
func (m *Pipeline) ClientTLS(port uint32) *tls.Config {
	if st := m.state.Load(); st != nil {
		if ps := st.ports[port]; ps != nil {
			return ps.clientTLS
		}
	}
	return nil
}

// certificate picks the certificate for an HTTPS handshake from the current
// config, so certificate changes apply without rebinding.
func (m *Pipeline) certificate(port uint32, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
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
func (m *Pipeline) build(cfg *config.Config, prep *Prepared) *state {
	st := &state{cfg: cfg, ports: make(map[uint32]*portState, len(cfg.Ports)), backends: make(map[string]*backendState, len(cfg.Backends)),
		queuesOf: map[*endpoints.Endpoint][]*waitqueue.Queue{}}
	for _, p := range cfg.Ports {
		ps := &portState{router: router.New(p), certs: newPortCerts(p)}
		if p.ClientCAs != nil {
			ps.clientTLS = m.ServerTLS(p.Port)
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
	var exts []*extproc.Picker
	for name, b := range cfg.Backends {
		bs := &backendState{cfg: b, proxies: make(map[*endpoints.Endpoint]http.Handler, len(b.Endpoints)), picker: prep.pickers[name]}
		for _, e := range b.Endpoints {
			ep := eps[e.Address]
			bs.eps = append(bs.eps, ep)
			switch t := b.TLS; {
			case t == nil:
				bs.proxies[ep] = m.up.Proxy(ep.Address, b.H2C, ep.ServedHeader())
			case t.Invalid != "":
				bs.proxies[ep] = unusableTLS(b, ep, m.logger)
			default:
				tlsKeys[t.Key] = true
				bs.proxies[ep] = m.up.ProxyTLS(ep.Address, t.Config, t.Key, ep.ServedHeader())
			}
		}
		if b.Picker != nil {
			bs.ext = m.ext.Picker(b, bs.eps)
			exts = append(exts, bs.ext)
		}
		if b.IsPool() {
			// The fleet exchange places other proxies' sends on the
			// pool's endpoints, picked here yet or not.
			if s, ok := bs.picker.(*picker.Scheduler); ok {
				s.SetEndpoints(bs.eps)
				s.SetDecisionHook(m.decisions.hookFor(name, b.Source))
			}
			if bs.queue = m.queues.For(name, b.Source, prep.profiles[name].GetQueue()); bs.queue != nil {
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
	m.ext.Retain(exts)
	return st
}

// Release sends on whoever waits in a pool's queue rather than holding
// them until a drain ends; call it before shutting the listeners down.
func (m *Pipeline) Release() {
	m.queues.Retain(func(string) bool { return false })
}

// Close waits for the mirrors in flight, then stops the model listing,
// the scrapers and idle upstream connections. Call it after the listeners
// have shut down.
func (m *Pipeline) Close() {
	m.mirrors.Wait()
	m.models.close()
	m.reg.Close()
	m.up.Close()
	m.ext.Close()
}
