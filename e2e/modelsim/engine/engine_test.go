package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type countingObserver struct {
	mu     sync.Mutex
	counts map[EventKind]int
}

func (o *countingObserver) Observe(ev Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[ev.Kind]++
}

func waitDone(t *testing.T, r *Request) Progress {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		p := r.Progress()
		if p.Done {
			return p
		}
		select {
		case <-r.Updates():
		case <-timeout:
			t.Fatalf("request not done: %+v", p)
		}
	}
}

// The driver runs the same core in scaled wall time: latencies it reports
// are simulated, while the test itself takes a fraction of that.
func TestEngineRunsInScaledTime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	obs := &countingObserver{counts: map[EventKind]int{}}
	e := New(Config{}, NewClock(0.01), obs)
	go e.Run(ctx)
	t.Cleanup(func() { cancel(); <-e.Done() })

	start := time.Now()
	r := NewRequest(text("p", 4000), 50, "")
	if err := e.Submit(r); err != nil {
		t.Fatal(err)
	}
	p := waitDone(t, r)
	wall := time.Since(start)
	if p.Err != nil || p.Generated != 50 || p.PromptTokens != 1000 {
		t.Fatalf("progress %+v", p)
	}
	ttft := p.FirstToken.Sub(r.Arrival)
	e2e := p.Finished.Sub(r.Arrival)
	// Simulated: ≈281 ms TTFT + 49 × ≈12 ms. Only lower bounds are checked:
	// on a shared box a wall-clock hiccup stretches simulated time by 1/scale.
	if ttft < 280*time.Millisecond {
		t.Errorf("simulated TTFT %v shorter than the cost model allows", ttft)
	}
	if e2e < 860*time.Millisecond {
		t.Errorf("simulated e2e %v too short", e2e)
	}
	t.Logf("simulated e2e %v took %v wall", e2e, wall)
	obs.mu.Lock()
	if obs.counts[EvFirstToken] != 1 || obs.counts[EvToken] != 49 || obs.counts[EvFinished] != 1 {
		t.Errorf("events %+v", obs.counts)
	}
	obs.mu.Unlock()
	if s := e.Stats(); s.Running != 0 || s.Waiting != 0 || s.CachedBlocks != 62 {
		t.Errorf("stats after finish %+v", s)
	}
}

func TestEngineQueueBoundAndCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := New(Config{MaxNumSeqs: 1, MaxWaiting: 2}, NewClock(0.01), nil)
	go e.Run(ctx)
	t.Cleanup(func() { cancel(); <-e.Done() })

	long := NewRequest(text("long", 400), 5000, "")
	if err := e.Submit(long); err != nil {
		t.Fatal(err)
	}
	var queued []*Request
	var full error
	for range 10 {
		r := NewRequest(text("w", 400), 5, "")
		if err := e.Submit(r); err != nil {
			full = err
			break
		}
		queued = append(queued, r)
	}
	if !errors.Is(full, ErrQueueFull) {
		t.Fatalf("want ErrQueueFull after %d queued, got %v", len(queued), full)
	}
	e.Cancel(long)
	if p := waitDone(t, long); !errors.Is(p.Err, ErrCancelled) {
		t.Fatalf("cancelled request: %+v", p)
	}
	for _, r := range queued {
		if p := waitDone(t, r); p.Err != nil || p.Generated != 5 {
			t.Fatalf("queued request after cancel: %+v", p)
		}
	}
}

func TestEngineStopFailsPending(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := New(Config{}, NewClock(0.01), nil)
	go e.Run(ctx)
	r := NewRequest(text("x", 400), 5000, "")
	if err := e.Submit(r); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-e.Done()
	if p := waitDone(t, r); !errors.Is(p.Err, ErrStopped) {
		t.Fatalf("want ErrStopped, got %+v", p)
	}
	if err := e.Submit(NewRequest([]byte("x"), 1, "")); !errors.Is(err, ErrStopped) {
		t.Fatalf("submit after stop: %v", err)
	}
}
