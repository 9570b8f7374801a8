package engine

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/proto/kvevents"
)

// Observer receives metric events from the engine goroutine, in simulated
// time, after each step's end.
type Observer interface {
	Observe(Event)
}

// Engine runs a Core in (scaled) real time: one goroutine per engine executes
// steps back to back, sleeping each step's simulated duration, and publishes
// token progress to requests. It costs nothing while idle.
type Engine struct {
	core  *Core
	clock *Clock
	obs   Observer

	slow atomic.Uint64 // float64 bits

	// coreMu guards core while the engine goroutine plans a step (drain,
	// Step, Stats), so that readers of the true state (peek.go) see it
	// between steps; it is not held while a step's time passes.
	coreMu sync.Mutex
	// submitted counts accepted Submits (peek.go).
	submitted atomic.Int64

	mu      sync.Mutex
	inbox   []*Request
	cancels []*Request
	stats   Stats
	stopped bool
	// kvSink receives KV events (SetKVSink); resetCache asks the engine
	// goroutine for a prefix-cache reset.
	kvSink     atomic.Pointer[func([]kvevents.Event)]
	resetCache bool
	wake       chan struct{}
	done       chan struct{}
}

// maxLagReal bounds how far (in wall time) the engine may run behind its
// schedule before it gives up catching up and re-anchors at "now"; below it,
// steps follow absolute deadlines so timer overshoot does not inflate latencies.
const maxLagReal = 20 * time.Millisecond

// New builds an engine; call Run to start it.
func New(cfg Config, clock *Clock, obs Observer) *Engine {
	if clock == nil {
		clock = NewClock(1)
	}
	e := &Engine{core: NewCore(cfg), clock: clock, obs: obs, wake: make(chan struct{}, 1), done: make(chan struct{})}
	e.slow.Store(math.Float64bits(1))
	e.stats = e.core.Stats()
	return e
}

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.core.Config() }

// Clock returns the engine's clock.
func (e *Engine) Clock() *Clock { return e.clock }

// SetSlowFactor multiplies every later step's duration by f (slow mode).
func (e *Engine) SetSlowFactor(f float64) {
	if f <= 0 {
		f = 1
	}
	e.slow.Store(math.Float64bits(f))
}

// Stats returns the gauges as of the last step.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Waiting += len(e.inbox)
	return s
}

// Submit queues r. It fails with ErrQueueFull when the waiting queue is at its
// bound, with *TooLongError when r can never fit, and with ErrStopped after Run ended.
func (e *Engine) Submit(r *Request) error {
	if err := e.core.prepare(r); err != nil {
		return err
	}
	if r.Arrival.IsZero() {
		r.Arrival = e.clock.Now()
	}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return ErrStopped
	}
	if e.stats.Waiting+len(e.inbox) >= e.core.cfg.MaxWaiting {
		e.mu.Unlock()
		return ErrQueueFull
	}
	e.inbox = append(e.inbox, r)
	e.submitted.Add(1)
	e.mu.Unlock()
	e.poke()
	return nil
}

// Cancel removes r (e.g. the client went away) and frees its blocks.
func (e *Engine) Cancel(r *Request) {
	e.mu.Lock()
	e.cancels = append(e.cancels, r)
	e.mu.Unlock()
	e.poke()
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Done is closed when Run has returned.
func (e *Engine) Done() <-chan struct{} { return e.done }

// drain moves submitted and cancelled requests into the core and returns the
// latest arrival among them.
func (e *Engine) drain() time.Time {
	e.mu.Lock()
	in, cancels, reset := e.inbox, e.cancels, e.resetCache
	e.inbox, e.cancels, e.resetCache = nil, nil, false
	e.mu.Unlock()
	if reset {
		e.emitKV(e.core.ResetPrefixCache())
	}
	var latest time.Time
	for _, r := range in {
		e.core.waiting = append(e.core.waiting, r)
		if r.Arrival.After(latest) {
			latest = r.Arrival
		}
	}
	for _, r := range cancels {
		if !r.finished && !r.cancelled {
			e.core.Remove(r)
			r.publish(ErrCancelled)
		}
	}
	return latest
}

func (e *Engine) publishStats() {
	s := e.core.Stats()
	e.mu.Lock()
	e.stats = s
	e.mu.Unlock()
}

// Run executes steps until ctx is done; then every unfinished request fails with ErrStopped.
func (e *Engine) Run(ctx context.Context) {
	defer close(e.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var prevEnd time.Time
	busy := false
	for {
		e.coreMu.Lock()
		latest := e.drain()
		if e.core.Idle() {
			busy = false
			e.publishStats()
			e.coreMu.Unlock()
			select {
			case <-e.wake:
				continue
			case <-ctx.Done():
				e.stop()
				return
			}
		}
		now := e.clock.Now()
		start := now
		if busy && now.Sub(prevEnd) < e.clock.Sim(maxLagReal) {
			start = prevEnd
		}
		if latest.After(start) {
			start = latest
		}
		res := e.core.Step(start, math.Float64frombits(e.slow.Load()))
		if res.Scheduled == 0 {
			// Nothing can run (all waiting requests blocked); wait for a change.
			busy = false
			e.publishStats()
			e.coreMu.Unlock()
			select {
			case <-e.wake:
				continue
			case <-ctx.Done():
				e.stop()
				return
			}
		}
		e.coreMu.Unlock()
		if err := e.clock.SleepUntil(ctx, res.End, timer); err != nil {
			e.stop()
			return
		}
		for _, r := range res.Touched {
			r.publish(nil)
		}
		e.emitKV(res.KV)
		if e.obs != nil {
			for _, ev := range res.Events {
				e.obs.Observe(ev)
			}
		}
		e.coreMu.Lock()
		e.publishStats()
		e.coreMu.Unlock()
		prevEnd, busy = res.End, true
	}
}

func (e *Engine) stop() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.coreMu.Lock()
	defer e.coreMu.Unlock()
	e.drain()
	for _, r := range append(e.core.waiting, e.core.running...) {
		r.publish(ErrStopped)
	}
	e.core.waiting, e.core.running = nil, nil
	e.publishStats()
}
