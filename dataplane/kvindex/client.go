package kvindex

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
	"github.com/infergate/infergate/proto/redial"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Schedulers are the proxy's pools' schedulers (picker.Schedulers).
type Schedulers interface {
	Each(fn func(pool string, profile *snapshotv1.PickerProfile, sched *picker.Scheduler))
}

// Config of a Client.
type Config struct {
	// Addr and DialOptions reach the control plane as for xDS (empty
	// DialOptions: plaintext).
	Addr        string
	DialOptions []grpc.DialOption
	NodeID      string
	Gateway     string
	Pools       Schedulers
	// AttachEvery is how often pools created since are given their source
	// (default 250 ms; an update attaches at once).
	AttachEvery time.Duration
	// Grace is how long the index outlives a lost stream before the pools
	// fall back to approximate matching (default 10 s).
	Grace time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnects
	// (defaults redial.DefaultMin and DefaultMax).
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
}

// Client keeps the gateway's pools' block index from the control plane's
// KVIndex stream and attaches each pool's Source to its scheduler.
type Client struct {
	cfg Config

	mu        sync.Mutex
	pools     map[string]*Pool
	connected bool
	lostAt    time.Time // when the stream was lost (zero while connected)
	attached  map[string]*attachment
	changed   chan struct{}
	toks      tokenizerFiles
	// problems: pools whose tokenizer does not load (pool → why).
	problems          map[string]string
	tokenizerFailures atomic.Int64
}

type attachment struct {
	sched  *picker.Scheduler
	source *Source
}

// New returns a client; Run starts it.
func New(cfg Config) *Client {
	if cfg.AttachEvery <= 0 {
		cfg.AttachEvery = 250 * time.Millisecond
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	cfg.BackoffMin, cfg.BackoffMax = redial.Bounds(cfg.BackoffMin, cfg.BackoffMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, pools: map[string]*Pool{}, attached: map[string]*attachment{}, problems: map[string]string{}, changed: make(chan struct{}, 1)}
}

// Run keeps the stream open until ctx is done.
func (c *Client) Run(ctx context.Context) error {
	// A pool's first sync can be large (8 bytes per block per server).
	conn, err := redial.Dial(c.cfg.Addr, c.cfg.DialOptions, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("kv index client for %s: %w", c.cfg.Addr, err)
	}
	defer conn.Close()
	api := kvindexv1.NewKVIndexClient(conn)
	done := make(chan struct{})
	defer func() { <-done }()
	go c.attachLoop(ctx, done)
	redial.Loop(ctx, c.cfg.BackoffMin, c.cfg.BackoffMax, c.cfg.Logger, "kv index", func(ctx context.Context) (bool, error) {
		return c.stream(ctx, api)
	})
	return nil
}

func (c *Client) stream(ctx context.Context, api kvindexv1.KVIndexClient) (answered bool, err error) {
	defer c.lost()
	st, err := api.Watch(ctx, &kvindexv1.WatchRequest{NodeId: c.cfg.NodeID, Gateway: c.cfg.Gateway})
	if err != nil {
		return false, err
	}
	for {
		u, err := st.Recv()
		if err != nil {
			return answered, err
		}
		c.Apply(u, !answered)
		answered = true
	}
}

func (c *Client) lost() {
	c.mu.Lock()
	if c.connected {
		c.connected, c.lostAt = false, time.Now()
	}
	c.mu.Unlock()
	c.poke()
}

// Apply applies one update; first marks a new stream's first message,
// which carries every pool: pools it does not name are gone.
func (c *Client) Apply(u *kvindexv1.IndexUpdate, first bool) {
	c.mu.Lock()
	c.connected, c.lostAt = true, time.Time{}
	if first {
		fresh := map[string]*Pool{}
		for _, pb := range u.GetPools() {
			fresh[pb.GetPool()] = newPool(pb.GetPool())
		}
		c.pools = fresh
	}
	for _, name := range u.GetRemovedPools() {
		delete(c.pools, name)
	}
	for _, pb := range u.GetPools() {
		p := c.pools[pb.GetPool()]
		if p == nil {
			p = newPool(pb.GetPool())
			c.pools[pb.GetPool()] = p
		}
		p.apply(pb)
	}
	c.mu.Unlock()
	c.poke()
}

func (c *Client) poke() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// attachLoop gives every pool whose profile has kvEvents and whose index
// the stream sent its Source, and takes it away when either goes (or the
// stream has been gone for Grace).
func (c *Client) attachLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(c.cfg.AttachEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
		case <-tick.C:
		}
		c.attach()
	}
}

func (c *Client) attach() {
	c.mu.Lock()
	if !c.connected && !c.lostAt.IsZero() && time.Since(c.lostAt) > c.cfg.Grace && len(c.pools) > 0 {
		c.cfg.Logger.Info("kv index lost with the control plane: prefix matching is approximate until it is back")
		c.pools = map[string]*Pool{}
	}
	defer c.mu.Unlock()
	pools := c.pools
	seen, paths := map[string]bool{}, map[string]bool{}
	detach := func(name string) {
		if a := c.attached[name]; a != nil {
			a.sched.SetPrefixSource(nil)
			delete(c.attached, name)
		}
	}
	c.cfg.Pools.Each(func(name string, profile *snapshotv1.PickerProfile, sched *picker.Scheduler) {
		seen[name] = true
		kv := profile.GetKvEvents()
		if kv == nil {
			delete(c.problems, name)
			detach(name)
			return
		}
		paths[kv.GetTokenizer().GetPath()] = true
		// Loaded once per file revision (under c.mu: attaching waits for it).
		tok, fresh, err := c.toks.get(kv.GetTokenizer())
		if err != nil {
			if fresh {
				c.cfg.Logger.Error("kv index: the pool's tokenizer does not load; its prefix matching stays approximate",
					"pool", name, "tokenizer", kv.GetTokenizer().GetPath(), "err", err)
				c.tokenizerFailures.Add(1)
			}
			c.problems[name] = err.Error()
			detach(name)
			return
		}
		delete(c.problems, name)
		p := pools[name]
		if p == nil {
			detach(name)
			return
		}
		if a := c.attached[name]; a != nil && a.sched == sched && a.source.pool == p && a.source.tok == tok {
			return
		}
		src := NewSource(p, tok)
		sched.SetPrefixSource(src)
		c.attached[name] = &attachment{sched: sched, source: src}
	})
	for name := range c.attached {
		if !seen[name] {
			delete(c.attached, name)
		}
	}
	for name := range c.problems {
		if !seen[name] {
			delete(c.problems, name)
		}
	}
	c.toks.forget(paths)
}

// Problems returns the pools whose tokenizer does not load, sorted, as
// the problems the proxy reports to the control plane (which shows them
// on the pools' status).
func (c *Client) Problems() []*fleetv1.PoolProblem {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*fleetv1.PoolProblem, 0, len(c.problems))
	for _, name := range slices.Sorted(maps.Keys(c.problems)) {
		out = append(out, fleetv1.NewProblem(name, fleetv1.ReasonTokenizerUnusable,
			c.problems[name]+"; prefix matching stays approximate"))
	}
	return out
}

// PoolState is one pool's index for the admin API.
type PoolState struct {
	BlockSize int            `json:"blockSize"`
	Keys      int            `json:"keys"`
	Adapters  []string       `json:"adapters,omitempty"`
	Servers   []ServerBlocks `json:"servers"`
	// Attached: the pool's picker uses the index.
	Attached bool `json:"attached"`
	// TokenizerError: the pool's tokenizer does not load, so its picker
	// does not use the index (approximate prefix matching).
	TokenizerError string `json:"tokenizerError,omitempty"`
	Matched        int64  `json:"matched"`
	Unjudged       int64  `json:"unjudged"`
}

// State is the client's view for the admin API.
type State struct {
	Connected bool                 `json:"connected"`
	Pools     map[string]PoolState `json:"pools"`
}

// State returns the index as received.
func (c *Client) State() State {
	c.mu.Lock()
	pools := maps.Clone(c.pools)
	st := State{Connected: c.connected, Pools: map[string]PoolState{}}
	c.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		p := pools[name]
		p.mu.RLock()
		ps := PoolState{BlockSize: p.blockSize, Keys: len(p.keyPos), Adapters: slices.Clone(p.adapters)}
		p.mu.RUnlock()
		ps.Servers = p.Servers()
		st.Pools[name] = ps
	}
	c.mu.Lock()
	for name, why := range c.problems {
		ps := st.Pools[name]
		ps.TokenizerError = why
		st.Pools[name] = ps
	}
	for name, a := range c.attached {
		if ps, ok := st.Pools[name]; ok {
			ps.Attached = true
			ps.Matched, ps.Unjudged = a.source.matched.Load(), a.source.unjudged.Load()
			st.Pools[name] = ps
		}
	}
	c.mu.Unlock()
	return st
}

// Match answers the admin API: how many blocks of body's prompt each
// server of pool holds.
func (c *Client) Match(pool, model string, body []byte) (map[string]int, int, error) {
	c.mu.Lock()
	a := c.attached[pool]
	c.mu.Unlock()
	if a == nil {
		return nil, 0, fmt.Errorf("pool %q has no KV index attached (kvEvents off in its profile, or nothing received yet)", pool)
	}
	return a.source.MatchBody(body, model)
}
