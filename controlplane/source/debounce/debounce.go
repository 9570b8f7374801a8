// Package debounce coalesces bursts of change notifications, so a source
// (Kubernetes informers, a watched directory) rebuilds its inputs once per
// burst rather than once per event, and never later than a bound after the
// burst began, however steady the stream.
package debounce

import (
	"context"
	"sync"
	"time"
)

// Signal is a coalescing change notification: Notify never blocks, and any
// number of notifications before the next Wait count as one. Use NewSignal.
type Signal struct {
	ch chan struct{}
	mu sync.Mutex
	// first is when the oldest change not yet waited for was noted (zero:
	// none): a burst that began while the caller was busy with the previous
	// one has been waiting since then.
	first time.Time
}

// NewSignal returns a Signal with nothing pending.
func NewSignal() *Signal { return &Signal{ch: make(chan struct{}, 1)} }

// Notify records a change.
func (s *Signal) Notify() {
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = time.Now()
	}
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// Wait waits for a change, then until changes have been quiet for quiet, or
// maxDelay has passed since the first change noted after the previous Wait
// returned — changes noted while the caller was busy count from when they
// came, so under a steady stream the caller starts again at once when its
// work took longer than maxDelay, instead of adding maxDelay to every round.
// It returns false when ctx ends first.
func (s *Signal) Wait(ctx context.Context, quiet, maxDelay time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.ch:
	}
	s.mu.Lock()
	first := s.first
	s.mu.Unlock()
	if first.IsZero() {
		first = time.Now()
	}
	deadline := first.Add(maxDelay)
	d := min(quiet, time.Until(deadline))
	if d <= 0 {
		s.done()
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			s.done()
			return true
		case <-s.ch:
			d := min(quiet, time.Until(deadline))
			if d <= 0 {
				s.done()
				return true
			}
			t.Reset(d)
		}
	}
}

// done starts the next burst: changes noted from now on are the caller's
// next round (those noted before it are covered by this one, as the caller
// reads its state after Wait returns).
func (s *Signal) done() {
	s.mu.Lock()
	s.first = time.Time{}
	s.mu.Unlock()
}
