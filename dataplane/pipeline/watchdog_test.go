package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWatchdog: the first-byte bound ends an attempt that gets no head;
// once the head came only the idle bound counts, each write rearming it;
// a watch that sees its bounds kept ends nothing.
func TestWatchdog(t *testing.T) {
	const d = 50 * time.Millisecond
	run := func(firstByte, idle time.Duration, feed func(w *watchdog)) (*upstreamTimeout, time.Duration) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		start := time.Now()
		w := watch(firstByte, idle, cancel)
		feed(w)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		why := w.stop()
		var ut *upstreamTimeout
		if why != nil && (!errors.As(context.Cause(ctx), &ut) || ut != why) {
			t.Errorf("cause %v, want %v", context.Cause(ctx), why)
		}
		return why, time.Since(start)
	}
	// No head within the first-byte bound.
	if why, took := run(d, time.Hour, func(*watchdog) {}); why == nil || why.what != "first byte" || took < d {
		t.Errorf("no head: %v after %v", why, took)
	}
	// A head in time, then silence: the idle bound, from the last write.
	why, took := run(time.Hour, d, func(w *watchdog) {
		w.touch(true)
		for range 4 {
			time.Sleep(d / 2)
			w.touch(false)
		}
	})
	if why == nil || why.what != "stream idle" || took < 2*d+d {
		t.Errorf("idle stream: %v after %v, want the idle bound after the last of the writes (≥ %v)", why, took, 3*d)
	}
	// Without a first-byte bound the head may take its time; the idle
	// bound starts with it.
	why, took = run(0, d, func(w *watchdog) {
		time.Sleep(3 * d)
		w.touch(true)
	})
	if why == nil || why.what != "stream idle" || took < 4*d {
		t.Errorf("slow head without a first-byte bound: %v after %v", why, took)
	}
	if watch(0, 0, func(error) {}) != nil {
		t.Error("a watch without bounds")
	}
	if !(&upstreamTimeout{"first byte", d}).Timeout() {
		t.Error("not a timeout")
	}
}
