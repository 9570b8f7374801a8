package kvindex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/infergate/infergate/proto/kvevents"
)

// server is the subscription to one model server's KV events and the
// block index they build.
type server struct {
	endpoint   string // serving "ip:port"
	eventsAddr string // tcp://ip:port of the PUB socket
	replayAddr string // tcp://ip:port of the ROUTER socket, "" when none
	topic      string
	log        *slog.Logger
	onChange   func()
	opts       *Options
	totals     *totals

	mu      sync.Mutex
	idx     *blocks
	lastSeq int64 // -1 before the first batch
	// reconnected is set when a subscription after the first one starts:
	// the publisher may have restarted meanwhile.
	reconnected bool
	subscribed  bool
	st          ServerStats
	cancel      context.CancelFunc
	done        chan struct{}
}

// ServerStats count a subscription's life.
type ServerStats struct {
	Connected                              bool
	Batches, Events, Gaps, Replays         int64
	Resyncs, Malformed, UnknownBlocks      int64
	Blocks, DroppedBlocks, OtherBlockSizes int64
	BlockSize                              int
	LastSeq                                int64
	LastEvent                              time.Time
	Err                                    string
}

func newServer(endpoint, eventsAddr, replayAddr, topic string, opts *Options, t *totals, log *slog.Logger, onChange func()) *server {
	return &server{endpoint: endpoint, eventsAddr: eventsAddr, replayAddr: replayAddr, topic: topic, opts: opts, totals: t,
		log: log.With("server", endpoint, "events", eventsAddr), onChange: onChange, idx: newBlocks(opts.MaxBlocksPerServer), lastSeq: -1, done: make(chan struct{})}
}

func (s *server) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	s.cancel = cancel
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
}

func (s *server) stop() {
	s.cancel()
	<-s.done
}

// run keeps a SUB socket connected until ctx ends, reconnecting with
// backoff. The publisher's sequence numbers tell what was missed while
// disconnected; a reconnect changes nothing else.
func (s *server) run(ctx context.Context) {
	backoff := s.opts.BackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		err := s.subscribe(ctx)
		s.mu.Lock()
		s.st.Connected = false
		if err != nil && ctx.Err() == nil {
			s.st.Err = err.Error()
		}
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("kv events: subscription lost", "err", err)
		if time.Since(start) > time.Minute {
			backoff = s.opts.BackoffMin
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.opts.BackoffMax)
	}
}

func (s *server) subscribe(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub := zmq4.NewSub(sctx, zmq4.WithDialerRetry(s.opts.BackoffMin), zmq4.WithDialerMaxRetries(1))
	defer sub.Close()
	if err := sub.Dial(s.eventsAddr); err != nil {
		return fmt.Errorf("dial %s: %w", s.eventsAddr, err)
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, s.topic); err != nil {
		return err
	}
	s.mu.Lock()
	s.st.Connected, s.st.Err = true, ""
	s.reconnected = s.subscribed && s.lastSeq >= 0
	s.subscribed = true
	s.mu.Unlock()
	var dec kvevents.Decoder
	dec.Limits = s.opts.Limits
	var batch kvevents.Batch
	for {
		msg, err := sub.Recv()
		if err != nil {
			return err
		}
		_, seq, payload, err := kvevents.ParseMessage(msg.Frames)
		if err != nil {
			s.malformed(err)
			continue
		}
		s.handle(ctx, &dec, &batch, seq, payload)
	}
}

func (s *server) malformed(err error) {
	s.mu.Lock()
	s.st.Malformed++
	s.st.Err = err.Error()
	s.mu.Unlock()
	s.totals.malformed.Add(1)
	s.log.Warn("kv events: malformed message", "err", err)
}

// handle applies one published batch in sequence order: a gap is closed
// from the replay socket when the server has one and still buffers the
// missed batches, otherwise (and when the publisher restarted) the
// server's blocks are dropped and rebuilt from the events that follow. The
// first batch of a subscription, and the first after a reconnect (vLLM
// numbers batches from 0 in every life and says nothing else of a restart,
// so one while we were away cannot be told from a network blip), rebuild
// the index from the history the replay socket still buffers.
func (s *server) handle(ctx context.Context, dec *kvevents.Decoder, batch *kvevents.Batch, seq uint64, payload []byte) {
	s.mu.Lock()
	last, recon := s.lastSeq, s.reconnected
	s.reconnected = false
	s.mu.Unlock()
	switch {
	case recon:
		s.resync("resubscribed: the publisher may have restarted", seq)
		if seq > 0 {
			s.replay(ctx, dec, batch, 0, seq, true)
		}
	case last >= 0 && int64(seq) == last:
		return // a duplicate
	case last >= 0 && int64(seq) < last:
		// Sequence numbers went back: the publisher restarted, and the
		// cache it describes is a new one.
		s.resync("publisher restarted", seq)
		if seq > 0 {
			s.replay(ctx, dec, batch, 0, seq, true)
		}
	case last < 0 && seq > 0:
		s.replay(ctx, dec, batch, 0, seq, true)
	case int64(seq) > last+1:
		from := uint64(last + 1)
		s.mu.Lock()
		s.st.Gaps++
		s.mu.Unlock()
		s.totals.gaps.Add(1)
		if !s.replay(ctx, dec, batch, from, seq, false) {
			s.resync(fmt.Sprintf("sequence gap %d..%d not replayable", from, seq-1), seq)
		}
	}
	s.applyPayload(dec, batch, seq, payload)
}

// replay fetches batches [from, to) and applies them in order; it reports
// whether all of them were applied. With history, the server may no longer
// buffer the first ones: what it has, contiguous up to to, is applied
// (chains stored before it stay unknown; nothing unknown is claimed).
func (s *server) replay(ctx context.Context, dec *kvevents.Decoder, batch *kvevents.Batch, from, to uint64, history bool) bool {
	if s.replayAddr == "" {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.ReplayTimeout)
	defer cancel()
	d := zmq4.NewDealer(rctx, zmq4.WithTimeout(s.opts.ReplayTimeout), zmq4.WithDialerMaxRetries(1))
	defer d.Close()
	err := d.Dial(s.replayAddr)
	if err == nil {
		err = d.SendMulti(zmq4.NewMsgFrom(nil, kvevents.AppendSeq(nil, from)))
	}
	next := from
	for err == nil {
		var msg zmq4.Msg
		if msg, err = d.Recv(); err != nil {
			break
		}
		if len(msg.Frames) != 3 || len(msg.Frames[0]) != 0 {
			err = fmt.Errorf("replay answer has %d frames, want [empty, seq, payload]", len(msg.Frames))
			break
		}
		var seq uint64
		if seq, err = kvevents.ParseSeq(msg.Frames[1]); err != nil {
			break
		}
		if seq == kvevents.EndOfReplay {
			break
		}
		if seq < next || seq >= to {
			continue // before the gap, or published since: the PUB socket delivers it
		}
		if seq != next && history && next == from {
			next = seq // the buffer starts later: history from there
		}
		if seq != next {
			err = fmt.Errorf("replay starts at %d, missed from %d: the server no longer buffers them", seq, next)
			break
		}
		s.applyPayload(dec, batch, seq, msg.Frames[2])
		next++
	}
	if err == nil && next != to {
		err = fmt.Errorf("replay ended at %d, want up to %d", next, to)
	}
	if err != nil {
		s.log.Warn("kv events: replay incomplete", "from", from, "to", to, "err", err)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("replay from %s timed out", s.replayAddr)
		}
		s.mu.Lock()
		s.st.Err = err.Error()
		s.mu.Unlock()
		return false
	}
	s.mu.Lock()
	s.st.Replays++
	s.mu.Unlock()
	s.totals.replays.Add(1)
	return true
}

func (s *server) resync(why string, seq uint64) {
	s.log.Info("kv events: dropping the server's blocks", "why", why, "seq", seq)
	s.totals.resyncs.Add(1)
	s.mu.Lock()
	s.st.Resyncs++
	s.idx.reset()
	s.lastSeq = int64(seq) - 1
	s.mu.Unlock()
	s.onChange()
}

func (s *server) applyPayload(dec *kvevents.Decoder, batch *kvevents.Batch, seq uint64, payload []byte) {
	err := dec.Decode(payload, batch)
	s.mu.Lock()
	s.lastSeq = int64(seq)
	s.st.Batches++
	s.st.LastEvent = time.Now()
	if err != nil {
		// What the batch changed is unknown, a removal included: the
		// server's blocks could now claim prefixes it evicted, so they
		// are dropped and rebuilt from later events.
		s.st.Malformed++
		s.st.Resyncs++
		s.totals.malformed.Add(1)
		s.totals.resyncs.Add(1)
		s.st.Err = fmt.Sprintf("batch %d: %v", seq, err)
		s.idx.reset()
		s.mu.Unlock()
		s.log.Warn("kv events: malformed batch, dropping the server's blocks", "seq", seq, "err", err)
		s.onChange()
		return
	}
	s.st.Events += int64(len(batch.Events))
	v, unknown, dropped := s.idx.version, s.idx.unknown, s.idx.dropped
	s.idx.apply(batch)
	changed := s.idx.version != v
	s.totals.unknown.Add(s.idx.unknown - unknown)
	s.totals.dropped.Add(s.idx.dropped - dropped)
	s.mu.Unlock()
	s.totals.batches.Add(1)
	s.totals.events.Add(int64(len(batch.Events)))
	if changed {
		s.onChange()
	}
}

func (s *server) stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.LastSeq = s.lastSeq
	st.Blocks = int64(len(s.idx.byHash))
	st.DroppedBlocks = s.idx.dropped
	st.UnknownBlocks = s.idx.unknown
	st.OtherBlockSizes = s.idx.otherSize
	st.BlockSize = s.idx.blockSize
	return st
}
