package bench

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
)

// The oracle: ours (picker.FromProfile(nil)) fed perfect information. It
// is the limit of what any picker could do with the same cost model, and
// nothing a gateway could run: a real server exports none of this.
//
//   - Load: right before each pick, every candidate's metrics are set
//     from its replica's true state (modelsim.Replica.Load: waiting,
//     running, KV use, adapters) plus the requests this oracle sent it
//     that have not reached its engine yet — the scraper stays idle
//     (Strategy.NoScrape), so no stale scrape overwrites them.
//   - Cached prefixes: truthPrefix, the scheduler's picker.PrefixSource,
//     answers per candidate how many leading prompt tokens its prefix
//     cache holds now (modelsim.Replica.CachedTokens).
//
// Picks are serialised: each sees the state the previous one left,
// including the request it just sent.

func registerOracle(r *Registry) {
	r.Add(Strategy{Name: "oracle", Kind: Oracle, Proxies: 1, NoScrape: true, New: newOracle,
		About: "ours fed the simulator's ground truth: every candidate's true waiting/running/KV (plus requests on their way to it) set right before each pick, and its true cached prefix of the request (`modelsim.Replica.CachedPromptTokens`) — the limit of what a picker could do, not a baseline"})
}

// oracle is one proxy's oracle picker.
type oracle struct {
	sched    *picker.Scheduler
	replicas map[string]*modelsim.Replica // by address
	// static are the replicas' metrics as a scrape parses them (cache
	// shape, adapter slots); each pick copies them and sets the load.
	static map[string]endpoints.Metrics
	prefix *truthPrefix

	mu sync.Mutex
	// picks counts the requests sent to each replica, so that those not
	// yet submitted to its engine count as waiting.
	picks map[string]int64
}

func newOracle(env *Env) picker.Picker {
	o := &oracle{sched: newOurs(env).(*picker.Scheduler), replicas: map[string]*modelsim.Replica{},
		static: map[string]endpoints.Metrics{}, picks: map[string]int64{}}
	for _, r := range env.Fleet.Replicas() {
		o.replicas[r.Addr()] = r
		o.static[r.Addr()] = scrapeOnce(r)
	}
	o.prefix = &truthPrefix{replicas: o.replicas}
	o.sched.SetPrefixSource(o.prefix)
	return o
}

// Pick implements picker.Picker.
func (o *oracle) Pick(req *picker.Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	for _, e := range cands {
		r := o.replicas[e.Address]
		if r == nil {
			continue
		}
		s := r.Load()
		// On their way: sent but not submitted. A request the replica
		// refused before its engine stays counted until the proxy
		// releases it, so the proxy's own open requests bound it.
		transit := max(0, min(o.picks[e.Address]-r.Submitted(), e.InFlight()))
		m := o.static[e.Address]
		m.Waiting, m.Running, m.KVCacheUsage = float64(s.Waiting)+float64(transit), float64(s.Running), s.KVUsage
		m.RunningAdapters, m.WaitingAdapters, m.At = s.RunningAdapters, s.WaitingAdapters, now
		e.SetMetrics(&m)
	}
	ep, err := o.sched.Pick(req, cands)
	if err == nil {
		o.picks[ep.Address]++
	}
	return ep, err
}

// scrapeOnce parses the replica's /metrics the way the proxy's scraper
// does (served in-process), for what does not change during a cell: the
// cache shape and the adapter slots, and whatever else the scraper learns
// to read.
func scrapeOnce(r *modelsim.Replica) endpoints.Metrics {
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	m, err := endpoints.ParseEngine(rec.Body, "vllm")
	if err != nil || m == nil {
		// The simulator's own exposition always parses; without it the
		// oracle still knows the load.
		return endpoints.Metrics{MaxLoRA: r.MaxLoRAs()}
	}
	return *m
}

// Done implements picker.Feedback.
func (o *oracle) Done(ep *endpoints.Endpoint, ok bool) { o.sched.Done(ep, ok) }

// truthPrefix is a prefix source of ground truth: how many leading
// prompt tokens each candidate's replica holds cached for the request.
type truthPrefix struct {
	replicas map[string]*modelsim.Replica
}

// CachedTokens writes into out[i] how many leading tokens of req's prompt
// cands[i]'s replica holds in its prefix cache, -1 for an endpoint that is
// not a replica of the fleet; false when the body is not a request the
// replicas would serve.
func (t *truthPrefix) CachedTokens(req *picker.Request, cands []picker.Candidate, out []int) bool {
	g, err := modelsim.ParseGeneration(req.Body)
	if err != nil {
		return false
	}
	for i := range cands {
		r := t.replicas[cands[i].Endpoint.Address]
		if r == nil {
			out[i] = -1
			continue
		}
		n, err := r.CachedTokens(g)
		if err != nil {
			return false
		}
		out[i] = n
	}
	return true
}

var _ picker.PrefixSource = (*truthPrefix)(nil)
