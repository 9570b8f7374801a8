package http1

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type ctxKey struct{}

func newReqCtx() *reqCtx {
	return &reqCtx{Context: context.WithValue(context.Background(), ctxKey{}, "v")}
}

// waitDone waits for ch to close or fails after a generous bound.
func waitDone(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not done", what)
	}
}

func TestReqCtxCancel(t *testing.T) {
	c := newReqCtx()
	if c.Err() != nil || c.Value(ctxKey{}) != "v" {
		t.Fatalf("fresh context: err %v, value %v", c.Err(), c.Value(ctxKey{}))
	}
	done := c.Done()
	select {
	case <-done:
		t.Fatal("done before cancel")
	default:
	}
	c.cancel()
	c.cancel() // a second cancel changes nothing
	waitDone(t, done, "Done channel")
	if c.Err() != context.Canceled {
		t.Fatalf("Err = %v, want context.Canceled", c.Err())
	}
	// Done asked for only after the cancel is closed too.
	late := newReqCtx()
	late.cancel()
	waitDone(t, late.Done(), "Done after cancel")
}

func TestReqCtxAfterFunc(t *testing.T) {
	c := newReqCtx()
	ran := make(chan int, 3)
	stop1 := c.AfterFunc(func() { ran <- 1 })
	stop2 := c.AfterFunc(func() { ran <- 2 })
	stop3 := c.AfterFunc(func() { ran <- 3 })
	if !stop2() {
		t.Fatal("stop of a pending hook: false")
	}
	if stop2() {
		t.Fatal("second stop of the same hook: true")
	}
	c.cancel()
	got := map[int]bool{}
	for range 2 {
		select {
		case n := <-ran:
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("hooks run: %v, want 1 and 3", got)
		}
	}
	if !got[1] || !got[3] {
		t.Fatalf("hooks run: %v, want 1 and 3", got)
	}
	if stop1() || stop3() {
		t.Fatal("stop after the hook ran: true")
	}
	// After the cancel a hook runs at once.
	late := make(chan struct{})
	if c.AfterFunc(func() { close(late) })() {
		t.Fatal("stop of a hook registered after the cancel: true")
	}
	waitDone(t, late, "hook registered after cancel")
}

// TestReqCtxFirstSlotOnce: a stopped first hook's stop function must not
// stop a later hook.
func TestReqCtxFirstSlotOnce(t *testing.T) {
	c := newReqCtx()
	stop1 := c.AfterFunc(func() {})
	if !stop1() {
		t.Fatal("stop: false")
	}
	ran := make(chan struct{})
	c.AfterFunc(func() { close(ran) })
	if stop1() {
		t.Fatal("the first hook's stop stopped the second")
	}
	c.cancel()
	waitDone(t, ran, "second hook")
}

// TestReqCtxDerived: contexts derived from a request's, and
// context.AfterFunc on it, end with it.
func TestReqCtxDerived(t *testing.T) {
	c := newReqCtx()
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	timed, cancelTimed := context.WithTimeout(c, time.Hour)
	defer cancelTimed()
	hooked := make(chan struct{})
	context.AfterFunc(c, func() { close(hooked) })
	if child.Value(ctxKey{}) != "v" {
		t.Fatal("derived context lost the values")
	}
	c.cancel()
	waitDone(t, child.Done(), "WithCancel child")
	waitDone(t, timed.Done(), "WithTimeout child")
	waitDone(t, hooked, "context.AfterFunc")
	if child.Err() != context.Canceled || context.Cause(c) != context.Canceled {
		t.Fatalf("child err %v, cause %v", child.Err(), context.Cause(c))
	}
}

// TestReqCtxRace registers, stops and cancels concurrently (run with
// -race): every hook either runs once or is stopped, never both.
func TestReqCtxRace(t *testing.T) {
	for range 200 {
		c := newReqCtx()
		var ran, stopped atomic.Int32
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				stop := c.AfterFunc(func() { ran.Add(1) })
				if stop() {
					stopped.Add(1)
				}
			})
		}
		wg.Go(c.cancel)
		wg.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for ran.Load()+stopped.Load() != 4 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := ran.Load() + stopped.Load(); n != 4 {
			t.Fatalf("ran %d + stopped %d, want 4", ran.Load(), stopped.Load())
		}
	}
}
