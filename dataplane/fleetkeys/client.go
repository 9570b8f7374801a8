// Package fleetkeys is the proxy's side of the fleet exchange: it reports
// to the control plane (PrefixKeys stream) the affinity keys each pool's
// picker used and the prompts it sent where (the cost model's sends:
// endpoint and chain keys), hands every picker its pool's keys as all the
// gateway's proxies report them, so the proxies' prefix plans agree from
// a prefix's first request to any of them (picker.FleetKeys), and merges
// the other proxies' sends into each cost model, so every proxy estimates
// the same cached prefixes (picker.Fleet MergeSends). Both are hints:
// when the stream is gone for Grace the pickers fall back to their own
// keys, and sends simply stop arriving.
package fleetkeys

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	"github.com/infergate/infergate/proto/redial"
)

// Pools gives the fleet side of each pool's picker by name (the Backend
// resource name), e.g. *picker.Schedulers.
type Pools interface {
	Fleets() map[string]picker.Fleet
}

// DefaultReportEvery is how often a proxy reports its sends: they tell
// the other proxies where prefill is queued, which matters for the next
// fraction of a second (see the control plane's SendsEvery), so reports
// go out often; a report with nothing new is not sent. DefaultKeysEvery
// is how often a report also carries the affinity keys used, which only
// feed plans rebuilt every second.
const (
	DefaultReportEvery = fleetv1.SendsEvery
	DefaultKeysEvery   = fleetv1.KeysEvery
)

// Config of a Client.
type Config struct {
	// Addr and DialOptions reach the control plane as for xDS (empty
	// DialOptions: plaintext, loopback only).
	Addr        string
	DialOptions []grpc.DialOption
	NodeID      string
	Gateway     string
	Pools       Pools
	// Problems, when set, returns the proxy's current problems with its
	// pools (e.g. kvindex.Client Problems), reported on the stream so the
	// control plane shows them on the pools' status: in the first report,
	// when they change (looked at every KeysEvery) and every
	// fleetv1.ProblemsRefresh.
	Problems func() []*fleetv1.PoolProblem
	// ReportEvery is how often the sends made since the last report are
	// sent (default DefaultReportEvery); KeysEvery how often the keys
	// used are (default DefaultKeysEvery, at least ReportEvery), and how
	// often pools created since get the fleet's keys.
	ReportEvery, KeysEvery time.Duration
	// Grace is how long the fleet keys outlive a lost stream before the
	// scorers fall back to their own (default 10 s): a reconnect to
	// another control-plane replica then changes no plan.
	Grace time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnects
	// (defaults redial.DefaultMin and DefaultMax: 250 ms and 500 ms).
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
}

// Client exchanges keys with the control plane until its context ends.
type Client struct {
	cfg Config
	set chan map[string]*picker.FleetKeys
	// cursors are each pool's position in its picker's sends, kept across
	// streams so sends made while the control plane was away go out on
	// reconnecting; only the report goroutine (one at a time) uses them.
	cursors map[string]cursor
	// streams counts the streams opened: only the first catches up.
	streams int
	counts  counts
	// reported is, per endpoint, when the latest own scrape reported was
	// taken (unix ns); loadBuf is reused. Only the report goroutine uses
	// them. badLoads counts relayed scrapes dropped as malformed.
	reported map[uint64]int64
	loadBuf  []picker.Load
	badLoads atomic.Int64
}

// cursor is a position in one picker's sends (a new picker for the pool,
// after a profile change, starts over).
type cursor struct {
	f   picker.Fleet
	pos uint64
}

// New returns a client; Run starts it.
func New(cfg Config) *Client {
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = DefaultReportEvery
	}
	if cfg.KeysEvery <= 0 {
		cfg.KeysEvery = DefaultKeysEvery
	}
	cfg.KeysEvery = max(cfg.KeysEvery, cfg.ReportEvery)
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	cfg.BackoffMin, cfg.BackoffMax = redial.Bounds(cfg.BackoffMin, cfg.BackoffMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, set: make(chan map[string]*picker.FleetKeys, 1), cursors: map[string]cursor{}, counts: newCounts(),
		reported: map[uint64]int64{}}
}

// Run keeps a stream open until ctx is done, then returns nil; it returns
// early only when the gRPC client cannot be created.
func (c *Client) Run(ctx context.Context) error {
	conn, err := redial.Dial(c.cfg.Addr, c.cfg.DialOptions)
	if err != nil {
		return fmt.Errorf("fleet keys client for %s: %w", c.cfg.Addr, err)
	}
	defer conn.Close()
	api := fleetv1.NewPrefixKeysClient(conn)
	applied := make(chan struct{})
	defer func() { <-applied }()
	go c.applyLoop(ctx, applied)

	redial.Loop(ctx, c.cfg.BackoffMin, c.cfg.BackoffMax, c.cfg.Logger, "fleet keys", func(ctx context.Context) (bool, error) {
		answered, err := c.stream(ctx, api)
		c.lost()
		return answered, err
	})
	return nil
}

// lost tells the apply loop that the stream is gone (nil set).
func (c *Client) lost() {
	select {
	case <-c.set:
	default:
	}
	c.set <- nil
}

// applyLoop hands the latest sets to the pools' scorers: at once when a
// set arrives, on every report tick for pools created since, and nil for
// all once the stream has been gone for Grace.
func (c *Client) applyLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var fleet map[string]*picker.FleetKeys
	tick := time.NewTicker(c.cfg.KeysEvery)
	defer tick.Stop()
	var expire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-c.set:
			if f == nil {
				if expire == nil && fleet != nil {
					expire = time.After(c.cfg.Grace)
				}
				continue
			}
			fleet, expire = f, nil
		case <-expire:
			fleet, expire = nil, nil
			c.cfg.Logger.Info("fleet keys lost with the control plane, planning prefixes over own keys")
		case <-tick.C:
		}
		for name, p := range c.cfg.Pools.Fleets() {
			p.SetFleetKeys(fleet[name])
		}
	}
}

// stream runs one Exchange stream; answered reports whether the control
// plane sent anything.
func (c *Client) stream(ctx context.Context, api fleetv1.PrefixKeysClient) (answered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := api.Exchange(ctx)
	if err != nil {
		return false, err
	}
	sendErr := make(chan error, 1)
	c.streams++
	catchUp := c.streams == 1
	go func() { sendErr <- c.report(ctx, st, catchUp) }()
	var sends []picker.Send
	for {
		msg, err := st.Recv()
		if err != nil {
			cancel()
			if serr := <-sendErr; serr != nil && ctx.Err() == nil {
				return answered, serr
			}
			return answered, err
		}
		answered = true
		if len(msg.GetSends()) > 0 {
			sends = c.merge(msg.GetSends(), sends)
		}
		if len(msg.GetLoads()) > 0 {
			c.mergeLoads(msg.GetLoads(), time.Now())
		}
		if msg.GetKeysUnchanged() {
			continue
		}
		f := Sets(msg)
		select {
		case <-c.set:
		default:
		}
		c.set <- f
	}
}

// merge hands each pool's picker the other proxies' sends of a push
// (pools this proxy does not have are skipped); buf is reused.
func (c *Client) merge(ps []*fleetv1.PoolSends, buf []picker.Send) []picker.Send {
	fleets := c.cfg.Pools.Fleets()
	for _, p := range ps {
		f := fleets[p.GetPool()]
		if f == nil {
			continue
		}
		buf = buf[:0]
		now := time.Now().UnixNano()
		for s := range p.All() {
			buf = append(buf, picker.Send{Endpoint: s.Endpoint, Keys: s.Keys, Prefill: float64(s.Prefill), Output: float64(s.Output), At: now - int64(s.Age)})
		}
		sends := len(buf)
		for d := range p.AllPrefilled() {
			buf = append(buf, picker.Send{Endpoint: d.Endpoint, Prefill: float64(d.Tokens), At: now - int64(d.Age), Prefilled: true})
		}
		f.MergeSends(buf)
		c.counts.add(p.GetPool(), 0, sends)
	}
	clear(buf)
	return buf[:0]
}

// report sends the sends made since the previous report every
// ReportEvery and the keys used every KeysEvery, from the start of the
// stream (the first report names the proxy, says it takes sends and, on
// the process's first stream, asks to catch up).
func (c *Client) report(ctx context.Context, st fleetv1.PrefixKeys_ExchangeClient, catchUp bool) error {
	var since int64
	var keysAt time.Time
	var buf []picker.KeyUse
	var sends []picker.Send
	var problems problemReports
	tick := time.NewTicker(c.cfg.ReportEvery)
	defer tick.Stop()
	first := true
	for {
		now := time.Now()
		r := &fleetv1.KeyReport{}
		if first {
			r.NodeId, r.Gateway, r.TakesSends, r.CatchUp = c.cfg.NodeID, c.cfg.Gateway, true, catchUp
		}
		keysDue := now.Sub(keysAt) >= c.cfg.KeysEvery
		if c.cfg.Problems != nil && keysDue {
			r.Problems = problems.due(c.cfg.Problems(), first, now)
		}
		fleets := c.cfg.Pools.Fleets()
		sends, r.Sends = c.sendsSince(fleets, sends, now.UnixNano())
		r.Loads = c.loadsSince(fleets, now)
		for name, p := range fleets {
			if !keysDue {
				break
			}
			buf = capKeys(p.KeysUsedSince(since, buf[:0]))
			if len(buf) == 0 {
				continue
			}
			pk := &fleetv1.PoolKeys{Pool: name, Window: durationpb.New(p.KeyWindow()), Keys: make([]*fleetv1.KeyUse, len(buf))}
			for i, u := range buf {
				pk.Keys[i] = &fleetv1.KeyUse{Key: u.Key, Age: durationpb.New(max(0, now.Sub(time.Unix(0, u.Last)))), Hot: u.Hot}
			}
			r.Pools = append(r.Pools, pk)
		}
		if first || len(r.Pools) > 0 || len(r.Sends) > 0 || len(r.Loads) > 0 || r.Problems != nil {
			if err := st.Send(r); err != nil {
				return err
			}
			first = false
		}
		if keysDue {
			// The next keys overlap these by an interval: a pick that
			// took its time before now may record its key after the
			// scan. Reporting a key twice changes nothing.
			since, keysAt = now.Add(-c.cfg.ReportEvery).UnixNano(), now
			c.forgetReported(now)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// problemReports decides when a stream reports the proxy's problems.
type problemReports struct {
	last *fleetv1.PoolProblems
	at   time.Time
}

// due returns the problems to put in a report made at now (nil: none):
// all of them (even none) in a stream's first report, when they changed
// since the last sent and when that was fleetv1.ProblemsRefresh ago, so
// the control plane, which forgets what is not repeated within
// fleetv1.ProblemsTTL, keeps them while they stand.
func (p *problemReports) due(cur []*fleetv1.PoolProblem, first bool, now time.Time) *fleetv1.PoolProblems {
	ps := &fleetv1.PoolProblems{Problems: cur}
	if len(ps.Problems) > fleetv1.MaxProblemsPerReport {
		ps.Problems = ps.Problems[:fleetv1.MaxProblemsPerReport]
	}
	if !first && proto.Equal(ps, p.last) && now.Sub(p.at) < fleetv1.ProblemsRefresh {
		return nil
	}
	p.last, p.at = ps, now
	return ps
}

// capKeys keeps at most fleetv1.MaxKeysPerPool of a pool's keys — hot ones
// first, then the most recently used — since the control plane refuses a
// longer report whole. A proxy's hot and once keys are each bounded by its
// plan, so together they can exceed it.
func capKeys(keys []picker.KeyUse) []picker.KeyUse {
	if len(keys) <= fleetv1.MaxKeysPerPool {
		return keys
	}
	slices.SortFunc(keys, func(a, b picker.KeyUse) int {
		if a.Hot != b.Hot {
			if a.Hot {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Last, a.Last)
	})
	return keys[:fleetv1.MaxKeysPerPool]
}

// Sets converts a FleetKeys message to picker form per pool.
func Sets(msg *fleetv1.FleetKeys) map[string]*picker.FleetKeys {
	out := make(map[string]*picker.FleetKeys, len(msg.GetPools()))
	for _, ps := range msg.GetPools() {
		out[ps.GetPool()] = &picker.FleetKeys{Hot: ps.GetHot(), Once: ps.GetOnce()}
	}
	return out
}
