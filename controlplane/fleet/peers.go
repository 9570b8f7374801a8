package fleet

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	"github.com/infergate/infergate/proto/redial"
)

// Peers are the other control-plane replicas. Each replica relays the
// reports of the proxies connected to it — as it accepted them, keys and
// sends — to every peer on one Relay stream per peer, and ingests what its
// peers relay as if those proxies were connected to it, so every replica
// holds every proxy's keys and sends and serves them to the proxies
// connected to it. A replica relays only its own proxies' reports, never
// a relayed one: with every replica sending to every other, each report
// reaches each replica exactly once, and nothing can loop.
type Peers struct {
	opts PeerOptions
	// id names this replica on its Relay streams, so a replica that finds
	// its own address among its peers learns it from the refusal.
	id    string
	stats *exchangeStats

	mu    sync.Mutex
	peers map[string]*peer
	// self are addresses that turned out to be this replica.
	self map[string]bool
	ctx  context.Context
}

// PeerOptions configure Peers.
type PeerOptions struct {
	// DialOptions reach a peer (TLS, the token presented); empty:
	// plaintext.
	DialOptions []grpc.DialOption
	// Authorize admits a peer's Relay stream (nil: every caller is
	// admitted); use a gRPC status error.
	Authorize func(ctx context.Context) error
	// QueueBytes bounds the reports waiting for one peer (default
	// 16 MiB): beyond it the oldest are dropped. MaxDelay drops reports
	// that waited longer (default 5 s): a late send would be taken as a
	// fresh one.
	QueueBytes int
	MaxDelay   time.Duration
	// BackoffMin and BackoffMax bound the wait between two attempts to
	// reach a peer (defaults redial.DefaultMin and DefaultMax: 250 ms and
	// 1 s, as proxies reconnect).
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
}

// maxBatchBytes bounds one RelayBatch (reports over it go one a batch).
const maxBatchBytes = 1 << 20

// NewPeers returns a replica's peer set, empty until Set; ctx ends every
// relay stream. agg's counters record the relays.
func NewPeers(ctx context.Context, agg *Aggregator, o PeerOptions) *Peers {
	if o.QueueBytes <= 0 {
		o.QueueBytes = 16 << 20
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Second
	}
	o.BackoffMin, o.BackoffMax = redial.Bounds(o.BackoffMin, o.BackoffMax)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var b [8]byte
	// crypto/rand does not fail on Linux; an id of zeros would still only
	// be compared with other replicas' random ones.
	_, _ = crand.Read(b[:])
	return &Peers{opts: o, id: hex.EncodeToString(b[:]), stats: &agg.stats, peers: map[string]*peer{}, self: map[string]bool{}, ctx: ctx}
}

// Set makes addrs ("host:port") the peers: relays start to new ones and
// stop to those gone. Addresses that turned out to be this replica are
// skipped.
func (p *Peers) Set(addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := map[string]bool{}
	for _, a := range addrs {
		if a == "" || p.self[a] {
			continue
		}
		keep[a] = true
		if p.peers[a] == nil {
			pr := &peer{addr: a, p: p, wake: make(chan struct{}, 1)}
			ctx, cancel := context.WithCancel(p.ctx)
			pr.cancel = cancel
			p.peers[a] = pr
			go pr.run(ctx)
			p.opts.Logger.Info("fleet: relaying to peer", "peer", a)
		}
	}
	for a, pr := range p.peers {
		if !keep[a] {
			pr.cancel()
			delete(p.peers, a)
			p.opts.Logger.Info("fleet: peer gone", "peer", a)
		}
	}
}

// Addrs returns the peers relayed to, sorted.
func (p *Peers) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.peers))
	for a := range p.peers {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// offer queues a report a proxy of gw (node) made here for every peer.
func (p *Peers) offer(gw, node string, r *fleetv1.KeyReport) {
	if len(r.GetPools()) == 0 && len(r.GetSends()) == 0 && len(r.GetLoads()) == 0 && r.GetProblems() == nil {
		return
	}
	q := &queued{at: time.Now(), r: r}
	if r.GetGateway() != gw || r.GetNodeId() != node {
		// Later reports leave them out; a relayed report names both.
		c := proto.CloneOf(r)
		c.Gateway, c.NodeId, c.TakesSends, c.CatchUp = gw, node, false, false
		q.r = c
	}
	q.size = proto.Size(q.r)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.peers {
		pr.push(q)
	}
}

// connected counts the peers with an open relay stream.
func (p *Peers) connected() (up, down int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.peers {
		pr.mu.Lock()
		if pr.up {
			up++
		} else {
			down++
		}
		pr.mu.Unlock()
	}
	return up, down
}

type queued struct {
	at   time.Time
	r    *fleetv1.KeyReport
	size int
}

// peer is one peer's relay: a queue of reports and the stream draining it.
type peer struct {
	addr   string
	p      *Peers
	cancel context.CancelFunc
	wake   chan struct{}

	mu    sync.Mutex
	queue []*queued
	bytes int
	up    bool
}

func (pr *peer) push(q *queued) {
	pr.mu.Lock()
	pr.queue = append(pr.queue, q)
	pr.bytes += q.size
	for pr.bytes > pr.p.opts.QueueBytes && len(pr.queue) > 1 {
		pr.bytes -= pr.queue[0].size
		pr.queue[0] = nil
		pr.queue = pr.queue[1:]
		pr.p.stats.relayDropped.Add(1)
	}
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
}

// take removes and returns a batch of queued reports (nil: none), after
// dropping those that waited longer than MaxDelay.
func (pr *peer) take() *fleetv1.RelayBatch {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	cutoff := time.Now().Add(-pr.p.opts.MaxDelay)
	for len(pr.queue) > 0 && pr.queue[0].at.Before(cutoff) {
		pr.bytes -= pr.queue[0].size
		pr.queue[0] = nil
		pr.queue = pr.queue[1:]
		pr.p.stats.relayDropped.Add(1)
	}
	if len(pr.queue) == 0 {
		return nil
	}
	b := &fleetv1.RelayBatch{}
	size := 0
	for len(pr.queue) > 0 && (len(b.Reports) == 0 || size+pr.queue[0].size <= maxBatchBytes) {
		q := pr.queue[0]
		b.Reports = append(b.Reports, q.r)
		size += q.size
		pr.bytes -= q.size
		pr.queue[0] = nil
		pr.queue = pr.queue[1:]
	}
	return b
}

// run keeps a Relay stream to the peer open until ctx ends or the peer
// turns out to be this replica.
func (pr *peer) run(ctx context.Context) {
	conn, err := redial.Dial(pr.addr, pr.p.opts.DialOptions)
	if err != nil {
		pr.p.opts.Logger.Error("fleet: cannot relay to peer", "peer", pr.addr, "err", err)
		return
	}
	defer conn.Close()
	api := fleetv1.NewPrefixKeysClient(conn)
	wait := pr.p.opts.BackoffMin
	// lastErr is the previous attempt's error: a peer that stays away
	// (being replaced, or a stale address) is logged once at warning
	// level, then at debug level until it answers.
	lastErr := ""
	for {
		sent, err := pr.stream(ctx, api)
		pr.setUp(false)
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.FailedPrecondition && pr.p.isSelf(pr.addr, err) {
			return
		}
		if sent {
			wait, lastErr = pr.p.opts.BackoffMin, ""
		}
		d := wait/2 + rand.N(wait/2+1)
		level := slog.LevelWarn
		if msg := status.Convert(err).Message(); msg == lastErr {
			level = slog.LevelDebug
		} else {
			lastErr = msg
		}
		pr.p.opts.Logger.Log(ctx, level, "fleet: relay to peer ended, reconnecting", "peer", pr.addr, "err", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		wait = min(wait*2, pr.p.opts.BackoffMax)
	}
}

// errSelf is the refusal of a replica's relay to itself.
const errSelf = "relay from this replica to itself"

// isSelf records addr as this replica when err is the self refusal.
func (p *Peers) isSelf(addr string, err error) bool {
	if status.Convert(err).Message() != errSelf {
		return false
	}
	p.opts.Logger.Info("fleet: peer address is this replica; not relaying to it", "peer", addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.self[addr] = true
	if pr := p.peers[addr]; pr != nil {
		pr.cancel()
		delete(p.peers, addr)
	}
	return true
}

func (pr *peer) setUp(up bool) {
	pr.mu.Lock()
	pr.up = up
	pr.mu.Unlock()
}

// stream runs one Relay stream; sent reports whether a batch went out.
func (pr *peer) stream(ctx context.Context, api fleetv1.PrefixKeysClient) (sent bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := api.Relay(ctx)
	if err != nil {
		return false, err
	}
	// The peer answers only by ending the stream: its status says why
	// (a refused token, a relay to itself).
	ended := make(chan error, 1)
	go func() { ended <- st.RecvMsg(&fleetv1.RelayEnd{}) }()
	// The first batch names this replica, and goes out at once so a
	// relay to self or a refused token is known without waiting for a
	// report.
	b := &fleetv1.RelayBatch{Replica: pr.p.id}
	for {
		if b != nil {
			if err := st.Send(b); err != nil {
				if errors.Is(err, io.EOF) {
					err = <-ended
				}
				return sent, err
			}
			if len(b.Reports) > 0 {
				sent = true
				pr.p.stats.relayedOut.Add(int64(len(b.Reports)))
			}
			pr.setUp(true)
		}
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case err := <-ended:
			if err == nil {
				err = errors.New("the peer ended the relay")
			}
			return sent, err
		case <-pr.wake:
		}
		b = pr.take()
	}
}

// Relay implements PrefixKeys: a peer's reports of its own proxies,
// ingested as if those proxies were connected here and never relayed on.
func (s *Service) Relay(stream fleetv1.PrefixKeys_RelayServer) error {
	if s.peers == nil {
		return status.Error(codes.Unimplemented, "this control plane has no fleet peers")
	}
	if s.peers.opts.Authorize != nil {
		if err := s.peers.opts.Authorize(stream.Context()); err != nil {
			return err
		}
	}
	first := true
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&fleetv1.RelayEnd{})
		}
		if err != nil {
			return err
		}
		if first {
			if b.GetReplica() == s.peers.id {
				return status.Error(codes.FailedPrecondition, errSelf)
			}
			first = false
		}
		for _, r := range b.GetReports() {
			gw, node := r.GetGateway(), r.GetNodeId()
			if !validStreamName(gw, node) {
				s.agg.stats.refused.Add(1)
				s.log.Warn("fleet: refusing relayed report without proxy or gateway", "node", node, "gateway", gw)
				continue
			}
			if err := s.agg.Ingest(gw, node, r); err != nil {
				// The peer accepted it: version skew. One report is lost,
				// not the stream.
				s.log.Warn("fleet: refusing relayed report", "gateway", gw, "node", node, "err", err)
				continue
			}
			s.agg.problems.set(gw, node, 0, r.GetProblems())
			s.agg.stats.relayedIn.Add(1)
		}
	}
}
