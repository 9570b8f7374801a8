// Package debounce coalesces bursts of change notifications, so a source
// (Kubernetes informers, a watched directory) rebuilds its inputs once per
// burst rather than once per event, and never later than a bound after the
// burst began, however steady the stream.
package debounce

import (
	"context"
	"time"
)

// Signal is a coalescing change notification: Notify never blocks, and any
// number of notifications before the next Wait count as one.
type Signal chan struct{}

// NewSignal returns a Signal with nothing pending.
func NewSignal() Signal { return make(Signal, 1) }

// Notify records a change.
func (s Signal) Notify() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// Wait waits for a change, then until changes have been quiet for quiet,
// or maxDelay has passed since that first change. It returns false when ctx
// ends first.
func (s Signal) Wait(ctx context.Context, quiet, maxDelay time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s:
	}
	deadline := time.Now().Add(maxDelay)
	t := time.NewTimer(min(quiet, maxDelay))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-s:
			d := min(quiet, time.Until(deadline))
			if d <= 0 {
				return true
			}
			t.Reset(d)
		}
	}
}
