package modelsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/infergate/infergate/proto/kvevents"
)

// KVEventsConfig is vLLM's --kv-events-config (the same JSON keys), which
// makes a replica publish its prefix-cache changes as vLLM does: a ZeroMQ
// PUB socket at Endpoint, a ROUTER socket at ReplayEndpoint answering
// requests for missed sequence numbers from the last BufferSteps batches.
type KVEventsConfig struct {
	Enable         bool   `json:"enable_kv_cache_events"`
	Publisher      string `json:"publisher"`
	Endpoint       string `json:"endpoint"`
	ReplayEndpoint string `json:"replay_endpoint"`
	BufferSteps    int    `json:"buffer_steps"`
	HWM            int    `json:"hwm"`
	MaxQueueSize   int    `json:"max_queue_size"`
	Topic          string `json:"topic"`
}

// ParseKVEventsConfig reads the JSON of --kv-events-config, with vLLM's
// defaults (endpoint tcp://*:5557, no replay socket, 10,000 buffered
// batches, HWM and queue 100,000). Unknown keys are refused so a typo does
// not silently turn events off.
func ParseKVEventsConfig(js string) (*KVEventsConfig, error) {
	c := &KVEventsConfig{}
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("kv events config: %w", err)
	}
	if c.Publisher == "" {
		c.Publisher = "zmq"
	}
	if c.Endpoint == "" {
		c.Endpoint = "tcp://*:5557"
	}
	if c.BufferSteps <= 0 {
		c.BufferSteps = 10_000
	}
	if c.HWM <= 0 {
		c.HWM = 100_000
	}
	if c.MaxQueueSize <= 0 {
		c.MaxQueueSize = 100_000
	}
	if c.Publisher != "zmq" && c.Publisher != "null" {
		return nil, fmt.Errorf("kv events config: publisher %q: want zmq or null", c.Publisher)
	}
	for _, ep := range []string{c.Endpoint, c.ReplayEndpoint} {
		if ep == "" {
			continue
		}
		if _, _, err := splitEndpoint(ep); err != nil {
			return nil, fmt.Errorf("kv events config: %w", err)
		}
	}
	return c, nil
}

// splitEndpoint parses tcp://host:port (host may be *).
func splitEndpoint(ep string) (host string, port int, err error) {
	rest, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return "", 0, fmt.Errorf("endpoint %q: only tcp:// endpoints are simulated", ep)
	}
	h, p, err := net.SplitHostPort(rest)
	if err != nil {
		return "", 0, fmt.Errorf("endpoint %q: %w", ep, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("endpoint %q: bad port", ep)
	}
	return h, port, nil
}

// bindAddr is where a replica listening on ip binds an endpoint: a
// wildcard host (vLLM's "tcp://*:5557") becomes the replica's own
// address, so replicas sharing a process on consecutive loopback
// addresses each get their own socket on the same port.
func bindAddr(ep, ip string) (string, error) {
	h, port, err := splitEndpoint(ep)
	if err != nil {
		return "", err
	}
	if h == "*" || h == "" || h == "0.0.0.0" || h == "::" {
		h = ip
	}
	return "tcp://" + net.JoinHostPort(h, strconv.Itoa(port)), nil
}

// KVEventStats count what a replica's publisher did.
type KVEventStats struct {
	Batches, Events, Replays int64
	// LastSeq is the last sequence number published (-1: none yet).
	LastSeq int64
	// Subscribed: a subscriber's subscription reached the PUB socket
	// (events published before are lost to it, as with vLLM).
	Subscribed bool
}

type kvPublisher struct {
	cfg    *KVEventsConfig
	log    *slog.Logger
	topic  []byte
	pub    zmq4.Socket
	replay zmq4.Socket
	queue  chan []kvevents.Event
	done   chan struct{}

	mu   sync.Mutex
	ring []bufferedBatch // the last BufferSteps batches, oldest first
	next uint64

	addr, replayAddr      string
	batches, events, reps atomic.Int64
}

type bufferedBatch struct {
	seq     uint64
	payload []byte
}

// startKVPublisher binds the sockets for a replica listening on ip.
func startKVPublisher(ctx context.Context, cfg *KVEventsConfig, ip string, log *slog.Logger) (*kvPublisher, error) {
	p := &kvPublisher{cfg: cfg, log: log, topic: []byte(cfg.Topic), queue: make(chan []kvevents.Event, cfg.MaxQueueSize), done: make(chan struct{})}
	ep, err := bindAddr(cfg.Endpoint, ip)
	if err != nil {
		return nil, err
	}
	p.pub = zmq4.NewPub(ctx)
	if err := p.pub.Listen(ep); err != nil {
		return nil, fmt.Errorf("kv events: listen %s: %w", ep, err)
	}
	_ = p.pub.SetOption(zmq4.OptionHWM, cfg.HWM)
	p.addr = "tcp://" + p.pub.Addr().String()
	if cfg.ReplayEndpoint != "" {
		rep, err := bindAddr(cfg.ReplayEndpoint, ip)
		if err != nil {
			_ = p.pub.Close()
			return nil, err
		}
		p.replay = zmq4.NewRouter(ctx, zmq4.WithTimeout(5*time.Second))
		if err := p.replay.Listen(rep); err != nil {
			_ = p.pub.Close()
			return nil, fmt.Errorf("kv events: listen %s: %w", rep, err)
		}
		p.replayAddr = "tcp://" + p.replay.Addr().String()
		go p.serveReplay()
	}
	go p.run(ctx)
	return p, nil
}

// emit queues one step's events; it blocks when the queue is full, as
// vLLM's publisher queue does, rather than lose events without a gap.
func (p *kvPublisher) emit(evs []kvevents.Event) {
	select {
	case p.queue <- evs:
	case <-p.done:
	}
}

func (p *kvPublisher) run(ctx context.Context) {
	defer close(p.done)
	for {
		select {
		case <-ctx.Done():
			_ = p.pub.Close()
			if p.replay != nil {
				_ = p.replay.Close()
			}
			return
		case evs := <-p.queue:
			b := kvevents.Batch{TS: float64(time.Now().UnixNano()) / 1e9, Events: evs, DPRank: 0}
			payload := kvevents.AppendBatch(nil, &b)
			p.mu.Lock()
			seq := p.next
			p.next++
			if len(p.ring) == p.cfg.BufferSteps {
				p.ring = append(p.ring[:0], p.ring[1:]...)
			}
			p.ring = append(p.ring, bufferedBatch{seq, payload})
			p.mu.Unlock()
			if err := p.pub.SendMulti(zmq4.NewMsgFrom(p.topic, kvevents.AppendSeq(nil, seq), payload)); err != nil {
				p.log.Warn("kv events: publish failed", "seq", seq, "err", err)
			}
			p.batches.Add(1)
			p.events.Add(int64(len(evs)))
		}
	}
}

// serveReplay answers [identity, "", start seq] with every buffered batch
// from start on, then the end marker, as vLLM's replay socket does.
func (p *kvPublisher) serveReplay() {
	for {
		msg, err := p.replay.Recv()
		if err != nil {
			return // closed
		}
		if len(msg.Frames) != 3 || len(msg.Frames[1]) != 0 {
			p.log.Warn("kv events: invalid replay request", "frames", len(msg.Frames))
			continue
		}
		id := msg.Frames[0]
		start, err := kvevents.ParseSeq(msg.Frames[2])
		if err != nil {
			p.log.Warn("kv events: invalid replay request", "err", err)
			continue
		}
		p.reps.Add(1)
		p.mu.Lock()
		var out []bufferedBatch
		for _, b := range p.ring {
			if b.seq >= start {
				out = append(out, b)
			}
		}
		p.mu.Unlock()
		for _, b := range out {
			if err := p.replay.SendMulti(zmq4.NewMsgFrom(id, nil, kvevents.AppendSeq(nil, b.seq), b.payload)); err != nil {
				break
			}
		}
		_ = p.replay.SendMulti(zmq4.NewMsgFrom(id, nil, kvevents.AppendSeq(nil, kvevents.EndOfReplay), nil))
	}
}

func (p *kvPublisher) stats() KVEventStats {
	p.mu.Lock()
	last := int64(p.next) - 1
	p.mu.Unlock()
	subscribed := false
	if t, ok := p.pub.(zmq4.Topics); ok {
		subscribed = len(t.Topics()) > 0
	}
	return KVEventStats{Batches: p.batches.Load(), Events: p.events.Load(), Replays: p.reps.Load(), LastSeq: last, Subscribed: subscribed}
}

// KVEventsAddr is the replica's KV event PUB endpoint ("" when off).
func (r *Replica) KVEventsAddr() string {
	if r.kv == nil {
		return ""
	}
	return r.kv.addr
}

// KVReplayAddr is the replica's replay ROUTER endpoint ("" when off).
func (r *Replica) KVReplayAddr() string {
	if r.kv == nil {
		return ""
	}
	return r.kv.replayAddr
}

// KVEventStats returns the publisher's counters (zero when events are off).
func (r *Replica) KVEventStats() KVEventStats {
	if r.kv == nil {
		return KVEventStats{LastSeq: -1}
	}
	return r.kv.stats()
}

// ResetPrefixCache empties the replica's prefix cache (AllBlocksCleared).
func (r *Replica) ResetPrefixCache() { r.eng.ResetPrefixCache() }

// StartKVEvents turns KV events on for a running replica (a fleet started
// without them), publishing until ctx ends; cfg's wildcard host is the
// replica's address. It fails when events are on already.
func (r *Replica) StartKVEvents(ctx context.Context, cfg *KVEventsConfig) error {
	if r.kv != nil {
		return errors.New("kv events are on already")
	}
	host, _, err := net.SplitHostPort(r.addr)
	if err != nil {
		return fmt.Errorf("replica %s is not listening", r.name)
	}
	return r.startKVEvents(ctx, cfg, host)
}

// enableKVEvents starts publishing for a replica listening on ip, when its
// config asks for it; called before the engine runs.
func (r *Replica) enableKVEvents(ctx context.Context, ip string) error {
	return r.startKVEvents(ctx, r.cfg.KVEvents, ip)
}

func (r *Replica) startKVEvents(ctx context.Context, cfg *KVEventsConfig, ip string) error {
	if cfg == nil || !cfg.Enable || cfg.Publisher == "null" {
		return nil
	}
	p, err := startKVPublisher(ctx, cfg, ip, r.cfg.Logger)
	if err != nil {
		return err
	}
	r.kv = p
	r.eng.SetKVSink(p.emit)
	return nil
}

// resetPrefixCache serves vLLM's POST /reset_prefix_cache.
func (r *Replica) resetPrefixCache(w http.ResponseWriter, _ *http.Request) {
	r.ResetPrefixCache()
	w.WriteHeader(http.StatusOK)
}
