package debounce

import (
	"context"
	"testing"
	"time"
)

// A steady stream of changes cannot postpone the end of a wait beyond
// maxDelay.
func TestBoundedUnderSteadyChanges(t *testing.T) {
	s := NewSignal()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamEnd := time.Now().Add(3 * time.Second)
	go func() {
		for ctx.Err() == nil && time.Now().Before(streamEnd) {
			s.Notify()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if !s.Wait(ctx, 20*time.Millisecond, 50*time.Millisecond) {
		t.Fatal("Wait reported cancellation")
	}
	if time.Now().After(streamEnd) {
		t.Fatal("Wait waited for the stream to end instead of maxDelay")
	}
}

// Quiet after one change: the wait ends after the quiet period.
func TestQuiet(t *testing.T) {
	s := NewSignal()
	s.Notify()
	start := time.Now()
	if !s.Wait(context.Background(), 10*time.Millisecond, time.Hour) {
		t.Fatal("Wait reported cancellation")
	}
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Fatalf("returned after %v, before the quiet period", d)
	}
}

func TestCancelled(t *testing.T) {
	s := NewSignal()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s.Wait(ctx, time.Hour, time.Hour) {
		t.Fatal("Wait ignored cancellation before any change")
	}
	s.Notify()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if s.Wait(ctx2, time.Hour, time.Hour) {
		t.Fatal("Wait ignored cancellation during the quiet period")
	}
}

// Notify never blocks, however many changes arrive before a wait.
func TestNotifyCoalesces(t *testing.T) {
	s := NewSignal()
	for range 100 {
		s.Notify()
	}
	if len(s.ch) != 1 {
		t.Fatalf("%d pending notifications, want 1", len(s.ch))
	}
}

// A change noted while the caller was busy has waited since then: once
// maxDelay has passed since it, Wait returns at once, however long quiet is.
func TestBoundCountsFromTheFirstChange(t *testing.T) {
	s := NewSignal()
	s.Notify()
	time.Sleep(60 * time.Millisecond)
	start := time.Now()
	if !s.Wait(context.Background(), time.Hour, 50*time.Millisecond) {
		t.Fatal("Wait reported cancellation")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v for a change older than maxDelay", d)
	}
	// The next burst counts from its own first change, not the last one.
	s.Notify()
	start = time.Now()
	if !s.Wait(context.Background(), 10*time.Millisecond, time.Hour) {
		t.Fatal("Wait reported cancellation")
	}
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Fatalf("returned after %v, before the quiet period", d)
	}
}
