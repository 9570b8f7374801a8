// Package fleetkeys is the proxy's side of the fleet-wide prefix keys: it
// reports the affinity keys each pool's prefix scorer used to the control
// plane (PrefixKeys stream) and hands every scorer its pool's keys as all
// the gateway's proxies report them, so the proxies' prefix plans agree
// from a prefix's first request to any of them (picker.FleetKeys). The
// keys are hints: when the stream is gone for Grace the scorers fall back
// to their own keys.
package fleetkeys

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
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

// Config of a Client.
type Config struct {
	// Addr and DialOptions reach the control plane as for xDS (empty
	// DialOptions: plaintext, loopback only).
	Addr        string
	DialOptions []grpc.DialOption
	NodeID      string
	Gateway     string
	Pools       Pools
	// ReportEvery is how often the keys used since the last report are
	// sent (default 250 ms).
	ReportEvery time.Duration
	// Grace is how long the fleet keys outlive a lost stream before the
	// scorers fall back to their own (default 10 s): a reconnect to
	// another control-plane replica then changes no plan.
	Grace time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnects
	// (defaults redial.DefaultMin and DefaultMax: 250 ms and 1 s).
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
}

// Client exchanges keys with the control plane until its context ends.
type Client struct {
	cfg Config
	// fleet is the last set received per pool, as handed to the scorers;
	// only Run's goroutines touch it, through apply.
	fleet map[string]*picker.FleetKeys
	set   chan map[string]*picker.FleetKeys
}

// New returns a client; Run starts it.
func New(cfg Config) *Client {
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = 250 * time.Millisecond
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	cfg.BackoffMin, cfg.BackoffMax = redial.Bounds(cfg.BackoffMin, cfg.BackoffMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, set: make(chan map[string]*picker.FleetKeys, 1)}
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
	tick := time.NewTicker(c.cfg.ReportEvery)
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
	go func() { sendErr <- c.report(ctx, st) }()
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
		f := Sets(msg)
		select {
		case <-c.set:
		default:
		}
		c.set <- f
	}
}

// report sends the keys used since the previous report every ReportEvery,
// from the start of the stream (the first report names the proxy).
func (c *Client) report(ctx context.Context, st fleetv1.PrefixKeys_ExchangeClient) error {
	var since int64
	var buf []picker.KeyUse
	tick := time.NewTicker(c.cfg.ReportEvery)
	defer tick.Stop()
	first := true
	for {
		now := time.Now()
		r := &fleetv1.KeyReport{}
		if first {
			r.NodeId, r.Gateway = c.cfg.NodeID, c.cfg.Gateway
		}
		for name, p := range c.cfg.Pools.Fleets() {
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
		if first || len(r.Pools) > 0 {
			if err := st.Send(r); err != nil {
				return err
			}
			first = false
		}
		// The next report overlaps this one by an interval: a pick that
		// took its time before now may record its key after the scan.
		// Reporting a key twice changes nothing.
		since = now.Add(-c.cfg.ReportEvery).UnixNano()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
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

// PoolKeys is one pool's fleet keys as the admin API shows them: decimal
// strings, as the control plane's snapshot dump (protojson) shows them.
type PoolKeys struct {
	Hot  []string `json:"hot"`
	Once []string `json:"once"`
}

// InUse returns the fleet keys each pool's plan is built over, by pool
// (pools without fleet keys are left out), for the proxy's admin API.
func InUse(p Pools) map[string]PoolKeys {
	out := map[string]PoolKeys{}
	str := func(ks []uint64) []string {
		s := make([]string, len(ks))
		for i, k := range ks {
			s[i] = strconv.FormatUint(k, 10)
		}
		return s
	}
	for name, s := range p.Fleets() {
		if f := s.FleetKeysInUse(); f != nil {
			out[name] = PoolKeys{Hot: str(f.Hot), Once: str(f.Once)}
		}
	}
	return out
}
