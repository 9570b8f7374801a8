package kube

import (
	"context"
	"testing"
	"time"
)

func newTestSource(debounce, maxDelay time.Duration) *Source {
	return &Source{opts: Options{Debounce: debounce, MaxDelay: maxDelay}, notify: make(chan struct{}, 1)}
}

// A steady stream of events cannot postpone a rebuild beyond MaxDelay.
func TestDebounceBoundedUnderSteadyEvents(t *testing.T) {
	s := newTestSource(20*time.Millisecond, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamEnd := time.Now().Add(3 * time.Second)
	go func() {
		for ctx.Err() == nil && time.Now().Before(streamEnd) {
			s.trigger()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if !s.debounce(ctx) {
		t.Fatal("debounce reported cancellation")
	}
	if time.Now().After(streamEnd) {
		t.Fatal("debounce waited for the event stream to end instead of MaxDelay")
	}
}

// Quiet after one event: the rebuild happens after Debounce.
func TestDebounceQuiet(t *testing.T) {
	s := newTestSource(10*time.Millisecond, time.Hour)
	start := time.Now()
	if !s.debounce(context.Background()) {
		t.Fatal("debounce reported cancellation")
	}
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Fatalf("returned after %v, before the quiet period", d)
	}
}

func TestDebounceCancelled(t *testing.T) {
	s := newTestSource(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s.debounce(ctx) {
		t.Fatal("debounce ignored cancellation")
	}
}

// Triggers never block, however many events arrive before a rebuild.
func TestTriggerCoalesces(t *testing.T) {
	s := newTestSource(time.Millisecond, time.Millisecond)
	for i := 0; i < 100; i++ {
		s.trigger()
	}
	if len(s.notify) != 1 {
		t.Fatalf("%d pending notifications, want 1", len(s.notify))
	}
}
