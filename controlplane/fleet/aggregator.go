// Package fleet is the control plane's side of the fleet exchange: it
// aggregates the prefix affinity keys a gateway's proxies use and serves
// every proxy of the gateway the whole set per pool, so each proxy plans
// a shared prefix's home from its first request to any of them (see
// dataplane/picker FleetKeys); and it relays the prompts each proxy sent
// where (their chain keys) to the gateway's other proxies, so every
// proxy's cost model estimates the same cached prefixes. Both are hints:
// a proxy that loses the stream plans over what it knows itself.
//
// Every control-plane replica serves the stream and relays the reports of
// the proxies connected to it to its peers (Relay), so each replica holds
// every proxy's keys and sends wherever the proxies are connected.
package fleet

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// Options of an Aggregator.
type Options struct {
	// MaxKeys bounds the keys kept per pool (default and most
	// fleetv1.MaxKeysPerPool, the proxy's own plan bound): beyond it the
	// least recently used are dropped. A report of more keys for one pool
	// is refused (fleetv1.CheckReport), so a bad proxy cannot make the
	// aggregator hold unbounded state.
	MaxKeys int
	// PushEvery is the shortest time between two pushes of a gateway's
	// key sets to one proxy (default fleetv1.KeysEvery): key changes in
	// between go out together. SendsEvery is the shortest time between two
	// pushes of the other proxies' sends and scrapes (default
	// fleetv1.SendsEvery, which says what it buys and costs).
	PushEvery, SendsEvery time.Duration
	// DefaultWindow is how long a key is kept after its last use when a
	// report gives no window (default fleetv1.DefaultKeyWindow, the prefix
	// scorer's); MaxWindow caps reported windows (default and most
	// fleetv1.MaxKeyWindow).
	DefaultWindow, MaxWindow time.Duration
	// MaxSends and MaxSendKeys bound the sends (prompts sent, as chain
	// keys) held per gateway for its streams to read (defaults 32,768
	// and 262,144: 2 MiB of keys); SendAge is how long one is held
	// (default 30 s), which is also how far back a starting proxy
	// catches up. Older sends go first; a stream that had not read them
	// skips them.
	MaxSends, MaxSendKeys int
	SendAge               time.Duration
	// ProblemsTTL is how long a proxy's reported problems stand without
	// being reported again (default and most fleetv1.ProblemsTTL);
	// ProblemsChanged, when set, is called whenever a gateway's problems
	// change (not when they expire: Problems drops those when read).
	ProblemsTTL     time.Duration
	ProblemsChanged func()
	// Now defaults to time.Now; tests set it.
	Now func() time.Time
}

// maxOnceServed bounds the once keys served per pool: when a pool has
// more of them than this and than hot keys, most are unique prompts,
// which no proxy plans over (a proxy takes keys sent once only while
// there are at most max(hot keys, 4 per endpoint) of them), and serving
// them would re-send the whole set at every new prompt. Then only the
// hot keys are served. 256 is 4 per endpoint for 64 endpoints.
const maxOnceServed = 256

// Aggregator holds the keys of every gateway's pools.
type Aggregator struct {
	opts Options

	stats exchangeStats

	// problems are the proxies' reported problems with their pools.
	problems problems

	mu       sync.Mutex
	gateways map[string]*gateway
	swept    int64 // unix ns of the last sweep
}

type gateway struct {
	pools map[string]*pool
	// version counts changes of the keys (new key, a key turning hot,
	// expiry); served counts changes of the set served, which leaves out
	// some (see maxOnceServed). Streams send when served differs from
	// what they sent.
	version, served uint64
	// subs are the streams of the gateway, woken on a change of keys or
	// a new send.
	subs map[chan struct{}]struct{}
	// sends are the gateway's recent sends, loads its proxies' recent
	// scrapes.
	sends *sendRing
	loads *loadTable
	// cached is the served set, built at version cachedAt.
	cached   *fleetv1.FleetKeys
	cachedAt uint64
}

type pool struct {
	window time.Duration
	keys   map[uint64]*keyState
}

type keyState struct {
	last int64 // unix ns of the last use any proxy reported
	// by is the first proxy that reported the key; a second proxy
	// reporting it makes it hot.
	by  string
	hot bool
}

// NewAggregator returns an empty aggregator.
func NewAggregator(o Options) *Aggregator {
	if o.MaxKeys <= 0 || o.MaxKeys > fleetv1.MaxKeysPerPool {
		o.MaxKeys = fleetv1.MaxKeysPerPool
	}
	if o.PushEvery <= 0 {
		o.PushEvery = fleetv1.KeysEvery
	}
	if o.SendsEvery <= 0 {
		o.SendsEvery = fleetv1.SendsEvery
	}
	o.SendsEvery = min(o.SendsEvery, o.PushEvery)
	if o.DefaultWindow <= 0 {
		o.DefaultWindow = fleetv1.DefaultKeyWindow
	}
	if o.MaxWindow <= 0 || o.MaxWindow > fleetv1.MaxKeyWindow {
		o.MaxWindow = fleetv1.MaxKeyWindow
	}
	if o.MaxSends <= 0 {
		o.MaxSends = 32 << 10
	}
	if o.MaxSendKeys <= 0 {
		o.MaxSendKeys = 256 << 10
	}
	if o.SendAge <= 0 {
		o.SendAge = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProblemsTTL <= 0 || o.ProblemsTTL > fleetv1.ProblemsTTL {
		o.ProblemsTTL = fleetv1.ProblemsTTL
	}
	return &Aggregator{opts: o, gateways: map[string]*gateway{},
		problems: problems{ttl: o.ProblemsTTL, now: o.Now, changed: o.ProblemsChanged, gw: map[string]map[string]*nodeProblems{}}}
}

// Problems returns, per gateway ("<ns>/<name>"), the problems its proxies
// reported about its pools and still stand by (see problems): every
// proxy's, connected here or relayed by a peer, sorted by pool, reason
// and proxy.
func (a *Aggregator) Problems() map[string][]Problem { return a.problems.current() }

// sweepEvery is how often Ingest looks for gateways to forget.
const sweepEvery = 10 * time.Second

// Ingest applies a report of node, a proxy of gw, and wakes the gateway's
// streams when the served set changed or it brought sends. A bad report
// is refused whole.
func (a *Aggregator) Ingest(gw, node string, r *fleetv1.KeyReport) error {
	if err := fleetv1.CheckReport(r, a.opts.MaxKeys); err != nil {
		a.stats.refused.Add(1)
		return err
	}
	now := a.opts.Now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gatewayLocked(gw)
	if n := g.sends.add(now, node, r.GetSends()); n > 0 {
		a.stats.sendsIn.Add(int64(n))
		wakeLocked(g)
	}
	if n := g.loads.add(now, node, r.GetLoads()); n > 0 {
		a.stats.loadsIn.Add(int64(n))
		wakeLocked(g)
	}
	changed := false
	for _, pr := range r.GetPools() {
		p := g.pools[pr.GetPool()]
		if p == nil {
			p = &pool{window: a.opts.DefaultWindow, keys: map[uint64]*keyState{}}
			g.pools[pr.GetPool()] = p
		}
		if w := pr.GetWindow(); w != nil && w.AsDuration() > 0 {
			p.window = min(w.AsDuration(), a.opts.MaxWindow)
		}
		for _, k := range pr.GetKeys() {
			last := now - int64(k.GetAge().AsDuration())
			st := p.keys[k.GetKey()]
			if st == nil {
				p.keys[k.GetKey()] = &keyState{last: last, by: node, hot: k.GetHot()}
				changed = true
				continue
			}
			st.last = max(st.last, last)
			if !st.hot && (k.GetHot() || st.by != node) {
				st.hot = true
				changed = true
			}
		}
		if len(p.keys) > a.opts.MaxKeys {
			p.trim(a.opts.MaxKeys)
			changed = true
		}
	}
	if a.expireLocked(g, now) || changed {
		a.changedLocked(g)
	}
	if now-a.swept > int64(sweepEvery) {
		a.sweepLocked(now)
	}
	return nil
}

// trim keeps the max most recently used keys.
func (p *pool) trim(max int) {
	keys := slices.Collect(maps.Keys(p.keys))
	slices.SortFunc(keys, func(x, y uint64) int { return cmp.Compare(p.keys[y].last, p.keys[x].last) })
	for _, k := range keys[max:] {
		delete(p.keys, k)
	}
}

// expireLocked drops the keys unused for their pool's window and reports
// whether any went.
func (a *Aggregator) expireLocked(g *gateway, now int64) bool {
	gone := false
	for name, p := range g.pools {
		forget := now - int64(p.window)
		for k, st := range p.keys {
			if st.last < forget {
				delete(p.keys, k)
				gone = true
			}
		}
		if len(p.keys) == 0 {
			delete(g.pools, name)
		}
	}
	return gone
}

func (a *Aggregator) gatewayLocked(gw string) *gateway {
	g := a.gateways[gw]
	if g == nil {
		g = &gateway{pools: map[string]*pool{}, subs: map[chan struct{}]struct{}{}, cached: &fleetv1.FleetKeys{},
			sends: newSendRing(sendLimits{sends: a.opts.MaxSends, keys: a.opts.MaxSendKeys, age: int64(a.opts.SendAge)}),
			loads: newLoadTable()}
		a.gateways[gw] = g
	}
	return g
}

func (a *Aggregator) changedLocked(g *gateway) {
	g.version++
	wakeLocked(g)
}

func wakeLocked(g *gateway) {
	for ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// sweepLocked forgets the gateways no stream reads whose keys all
// expired and whose sends all aged out. A gateway is kept without streams
// until then because peers relay its other proxies' reports here: a proxy
// that connects to this replica later is served them at once.
func (a *Aggregator) sweepLocked(now int64) {
	a.swept = now
	for name, g := range a.gateways {
		if a.expireLocked(g, now) {
			a.changedLocked(g)
		}
		if len(g.subs) == 0 && len(g.pools) == 0 && g.sends.expire(now) {
			delete(a.gateways, name)
		}
	}
}

// Keys returns the served set of gw after dropping expired keys, and its
// version (0: nothing served yet). Pools and keys are sorted, so
// equal sets compare equal.
func (a *Aggregator) Keys(gw string) (*fleetv1.FleetKeys, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gateways[gw]
	if g == nil {
		return &fleetv1.FleetKeys{}, 0
	}
	if a.expireLocked(g, a.opts.Now().UnixNano()) {
		a.changedLocked(g)
	}
	if g.cachedAt != g.version {
		if next := g.set(); !proto.Equal(next, g.cached) {
			g.cached = next
			g.served++
		}
		g.cachedAt = g.version
	}
	return g.cached, g.served
}

func (g *gateway) set() *fleetv1.FleetKeys {
	out := &fleetv1.FleetKeys{}
	for _, name := range slices.Sorted(maps.Keys(g.pools)) {
		ps := &fleetv1.PoolSet{Pool: name}
		for k, st := range g.pools[name].keys {
			if st.hot {
				ps.Hot = append(ps.Hot, k)
			} else {
				ps.Once = append(ps.Once, k)
			}
		}
		if len(ps.Once) > max(len(ps.Hot), maxOnceServed) {
			ps.Once = nil
		}
		slices.Sort(ps.Hot)
		slices.Sort(ps.Once)
		out.Pools = append(out.Pools, ps)
	}
	return out
}

// subscribe returns a channel woken when gw's set changes or a send or a
// scrape arrives, and the gateway's sends and scrapes (held while the
// stream is subscribed); the channel starts signalled, so the stream
// sends the current set first.
func (a *Aggregator) subscribe(gw string) (chan struct{}, *sendRing, *loadTable) {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gatewayLocked(gw)
	g.subs[ch] = struct{}{}
	return ch, g.sends, g.loads
}

// unsubscribe removes a stream. A gateway whose last stream left is
// forgotten once its keys expire and its sends age out (sweepLocked).
func (a *Aggregator) unsubscribe(gw string, ch chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g := a.gateways[gw]; g != nil {
		delete(g.subs, ch)
	}
}

// buffered returns the sends and keys held over all gateways.
func (a *Aggregator) buffered() (sends, keys int) {
	a.mu.Lock()
	rings := make([]*sendRing, 0, len(a.gateways))
	for _, g := range a.gateways {
		rings = append(rings, g.sends)
	}
	a.mu.Unlock()
	for _, r := range rings {
		s, k := r.size()
		sends += s
		keys += k
	}
	return sends, keys
}
