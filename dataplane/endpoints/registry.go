package endpoints

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Spec describes an endpoint a config wants.
type Spec struct {
	Address        string
	MetricsAddress string
	Pod            string
	EngineType     string
	// Scrape is true when some InferencePool uses the endpoint, so its
	// /metrics are polled.
	Scrape bool
}

// Options tune a Registry. Zero values take the defaults.
type Options struct {
	// Interval between scrapes of one endpoint (default 50 ms); each wait
	// is jittered by ±20 % so scrapes of many endpoints do not align.
	Interval time.Duration
	// Timeout of one scrape (default 1 s).
	Timeout time.Duration
	// Client used for scraping; default is a keep-alive client of its own.
	Client *http.Client
	// Proxies is how many proxies scrape the same model servers (default
	// 1). Each proxy scrapes every Interval × Proxies, so a server sees
	// about one scrape per Interval however many proxies there are; a
	// proxy's metrics then count as fresh for 4 of its intervals (at least
	// DefaultStaleAfter), and its own requests since the last scrape plus
	// Proxies − 1 times its own send rate fill the gap (Endpoint.Unseen).
	// SetProxies changes it at run time.
	Proxies int
	// OnScrape, when set, is called after each successful scrape with the
	// endpoint whose metrics were just stored (on the scraper's goroutine;
	// it must be quick), so a wait queue learns that load changed without
	// polling.
	OnScrape func(*Endpoint)
}

// Registry owns every endpoint the current config names and their scrapers.
type Registry struct {
	logger *slog.Logger
	opts   Options
	sched  *schedule

	mu   sync.Mutex
	eps  map[string]*managed
	done bool
	// ownClient is set when the scrape client is the registry's own,
	// whose idle connections Close closes.
	ownClient bool
}

type managed struct {
	ep     *Endpoint
	spec   Spec
	cancel context.CancelFunc // nil when not scraped
	wg     sync.WaitGroup
}

// NewRegistry returns an empty registry.
func NewRegistry(logger *slog.Logger, opts Options) *Registry {
	if opts.Interval <= 0 {
		opts.Interval = defaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	own := opts.Client == nil
	if own {
		opts.Client = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}}
	}
	return &Registry{logger: logger, opts: opts, sched: newSchedule(opts.Interval, opts.Proxies), eps: map[string]*managed{}, ownClient: own}
}

// defaultInterval is Options.Interval's default.
const defaultInterval = 50 * time.Millisecond

// schedule is the scrape schedule a registry's endpoints share, so a new
// proxy count reaches all of them at once.
type schedule struct {
	base    time.Duration // Options.Interval
	proxies atomic.Int64  // ≥ 1
}

func newSchedule(base time.Duration, proxies int) *schedule {
	s := &schedule{base: base}
	s.proxies.Store(int64(max(proxies, 1)))
	return s
}

// interval is the time between two scrapes of one endpoint by this proxy.
func (s *schedule) interval() time.Duration { return s.base * time.Duration(s.proxies.Load()) }

// staleAfter is how long one scrape stays usable at the current interval.
func (s *schedule) staleAfter() time.Duration { return max(DefaultStaleAfter, 4*s.interval()) }

// SetProxies sets how many proxies share the scrape load (values < 1 mean
// 1). Scrapers pick the new interval up after their current wait; endpoints
// get the matching staleness bound and unseen-request factor. The proxy
// calls it with the count its control plane sends (Manifest.proxy_count).
func (r *Registry) SetProxies(n int) {
	n = max(n, 1)
	if old := r.sched.proxies.Swap(int64(n)); old != int64(n) {
		r.logger.Info("scrape interval changed", "proxies", n, "interval", r.Interval(), "staleAfter", r.sched.staleAfter())
	}
}

// Proxies is the number of proxies the scrape load is shared by.
func (r *Registry) Proxies() int { return int(r.sched.proxies.Load()) }

// Interval is the current interval between two scrapes of one endpoint by
// this proxy.
func (r *Registry) Interval() time.Duration { return r.sched.interval() }

// Schedule is how a proxy scrapes its model servers, for the admin API.
type Schedule struct {
	// Proxies is the number of proxies sharing the scrape load (the
	// control plane's Manifest.proxy_count).
	Proxies int `json:"proxies"`
	// Interval between two scrapes of one endpoint by this proxy, and
	// StaleAfter how old its metrics may be for decisions (Go durations).
	Interval   string `json:"interval"`
	StaleAfter string `json:"staleAfter"`
}

// Schedule returns the current scrape schedule.
func (r *Registry) Schedule() Schedule {
	return Schedule{Proxies: r.Proxies(), Interval: r.Interval().String(), StaleAfter: r.sched.staleAfter().String()}
}

// Sync makes the registry hold exactly the given endpoints: new addresses
// get an Endpoint (and a scraper when Scrape is set), addresses no longer
// named are dropped and their scrapers stopped. An address whose spec is
// unchanged keeps its Endpoint, so in-flight counts and metrics carry over
// config versions. Duplicate addresses merge, scraping if any asks to. It
// returns the endpoints by address.
func (r *Registry) Sync(specs []Spec) map[string]*Endpoint {
	want := make(map[string]Spec, len(specs))
	for _, s := range specs {
		// A pool's view of a shared address wins over a Service's: it is
		// the one that needs the metrics address and engine type.
		if prev, ok := want[s.Address]; ok && (prev.Scrape || !s.Scrape) {
			continue
		}
		want[s.Address] = s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var stop []*managed
	for addr, m := range r.eps {
		if s, ok := want[addr]; !ok || s != m.spec {
			stop = append(stop, m)
			delete(r.eps, addr)
		}
	}
	out := make(map[string]*Endpoint, len(want))
	for addr, s := range want {
		m := r.eps[addr]
		if m == nil {
			ep := newEndpoint(s, r.sched)
			m = &managed{ep: ep, spec: s}
			if s.Scrape && !r.done {
				r.startScraper(m)
			}
			r.eps[addr] = m
		}
		out[addr] = m.ep
	}
	for _, m := range stop {
		if m.cancel != nil {
			m.cancel()
		}
	}
	return out
}

func (r *Registry) startScraper(m *managed) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	sc := &scraper{ep: m.ep, client: r.opts.Client, interval: r.Interval, timeout: r.opts.Timeout,
		url: "http://" + m.spec.MetricsAddress + "/metrics", names: namesFor(m.spec.EngineType),
		logger: r.logger.With("endpoint", m.spec.Address), onScrape: r.opts.OnScrape, sameAddress: m.spec.MetricsAddress == m.spec.Address}
	m.wg.Go(func() { sc.run(ctx) })
}

// Scraping reports how many scrapers run, for tests and the admin API.
func (r *Registry) Scraping() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.eps {
		if m.cancel != nil {
			n++
		}
	}
	return n
}

// Statuses returns every endpoint's state ordered by address.
func (r *Registry) Statuses() []Status {
	now := time.Now()
	r.mu.Lock()
	out := make([]Status, 0, len(r.eps))
	for _, m := range r.eps {
		out = append(out, m.ep.status(now, m.cancel != nil))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Close stops every scraper and waits for them.
func (r *Registry) Close() {
	r.mu.Lock()
	r.done = true
	ms := make([]*managed, 0, len(r.eps))
	for _, m := range r.eps {
		ms = append(ms, m)
		if m.cancel != nil {
			m.cancel()
		}
	}
	r.mu.Unlock()
	for _, m := range ms {
		m.wg.Wait()
	}
	if r.ownClient {
		r.opts.Client.CloseIdleConnections()
	}
}
