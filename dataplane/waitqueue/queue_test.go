package waitqueue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"

	"github.com/infergate/infergate/dataplane/internal/testwait"
)

// harness is a queue whose pool headroom the test sets, with the waiters
// it started.
type harness struct {
	t    *testing.T
	q    *Queue
	room atomic.Int64
	obs  *countObs
	done chan result
	wg   sync.WaitGroup
}

type result struct {
	id  string
	err error
}

type countObs struct {
	mu sync.Mutex
	n  map[Outcome]int
}

func (c *countObs) Waited(_ string, _ int32, o Outcome, _ time.Duration) {
	c.mu.Lock()
	c.n[o]++
	c.mu.Unlock()
}

func (c *countObs) count(o Outcome) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[o]
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, obs: &countObs{n: map[Outcome]int{}}, done: make(chan result, 1000)}
	h.q = New("pool", cfg, h.obs)
	h.q.SetHeadroom(func() int { return int(h.room.Load()) })
	t.Cleanup(func() {
		h.q.Flush()
		h.wg.Wait()
	})
	return h
}

func bigConfig() Config { return Config{MaxRequests: 100, MaxBytes: 1 << 20, TTL: time.Minute} }

// add starts a waiter and returns once it is queued (or has returned).
func (h *harness) add(ctx context.Context, id string, r Request) {
	h.t.Helper()
	before := h.q.Len()
	h.wg.Go(func() {
		h.done <- result{id, h.q.Wait(ctx, r)}
	})
	testwait.Until(h.t, "waiter "+id+" queued", func() bool { return h.q.Len() > before || len(h.done) > 0 })
}

// next dispatches one waiter and returns its id.
func (h *harness) next() string {
	h.t.Helper()
	h.room.Store(1)
	h.q.Kick()
	h.room.Store(0)
	r := h.recv()
	if r.err != nil {
		h.t.Fatalf("waiter %s: %v, want dispatched", r.id, r.err)
	}
	return r.id
}

func (h *harness) recv() result {
	h.t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(5 * time.Second):
		h.t.Fatal("no waiter returned")
	}
	return result{}
}

func TestFastPathAndNoOvertaking(t *testing.T) {
	h := newHarness(t, bigConfig())
	h.room.Store(1)
	if err := h.q.Wait(context.Background(), Request{}); err != nil {
		t.Fatalf("empty queue, pool with room: %v", err)
	}
	if h.obs.count(Dispatched) != 0 {
		t.Fatal("a request that never waited was counted as dispatched from the queue")
	}
	h.room.Store(0)
	h.add(context.Background(), "first", Request{})
	// The pool has room again but one request waits: a newcomer queues
	// behind it, and the event that finds room serves the first.
	h.room.Store(1)
	h.add(context.Background(), "second", Request{})
	if got := h.recv().id; got != "first" {
		t.Fatalf("dispatched %s first, want the one that waited", got)
	}
	if h.q.Len() != 1 {
		t.Fatalf("queue length %d, want 1 (headroom 1 per event)", h.q.Len())
	}
	h.q.Kick()
	if got := h.recv().id; got != "second" {
		t.Fatalf("dispatched %s", got)
	}
}

func TestStrictPriorityBands(t *testing.T) {
	h := newHarness(t, bigConfig())
	for i, p := range []int32{0, -1, 2, 0, 1, 2, -1} {
		h.add(context.Background(), fmt.Sprintf("p%d#%d", p, i), Request{Priority: p})
	}
	want := []string{"p2#2", "p2#5", "p1#4", "p0#0", "p0#3", "p-1#1", "p-1#6"}
	for i, w := range want {
		if got := h.next(); got != w {
			t.Fatalf("dispatch %d: %s, want %s", i, got, w)
		}
	}
	// A higher-priority arrival jumps ahead of lower ones already waiting.
	h.add(context.Background(), "low", Request{Priority: 0})
	h.add(context.Background(), "high", Request{Priority: 5})
	if got := h.next(); got != "high" {
		t.Fatalf("dispatched %s, want the higher priority", got)
	}
	h.next()
}

func TestRoundRobinHeavyFlowDoesNotStarveLight(t *testing.T) {
	h := newHarness(t, bigConfig())
	for i := range 20 {
		h.add(context.Background(), fmt.Sprintf("heavy%d", i), Request{Flow: "heavy"})
	}
	h.add(context.Background(), "light0", Request{Flow: "light"})
	h.add(context.Background(), "light1", Request{Flow: "light"})
	h.add(context.Background(), "once", Request{Flow: "once"})
	h.add(context.Background(), "anon", Request{}) // no fairness id: flow ""
	want := []string{"heavy0", "light0", "once", "anon", "heavy1", "light1", "heavy2", "heavy3"}
	for i, w := range want {
		if got := h.next(); got != w {
			t.Fatalf("dispatch %d: %s, want %s", i, got, w)
		}
	}
	// A flow arriving while the heavy one is alone gets the next turn but
	// one, not after the heavy backlog.
	h.add(context.Background(), "late", Request{Flow: "late"})
	got := []string{h.next(), h.next()}
	if got[0] != "late" && got[1] != "late" {
		t.Fatalf("late light flow not served within two dispatches: %v", got)
	}
	for h.q.Len() > 0 {
		h.next()
	}
}

func TestTTL(t *testing.T) {
	cfg := bigConfig()
	cfg.TTL = 30 * time.Millisecond
	h := newHarness(t, cfg)
	start := time.Now()
	err := h.q.Wait(context.Background(), Request{Priority: 1})
	if !errors.Is(err, ErrTTL) {
		t.Fatalf("Wait on a saturated pool: %v, want ErrTTL", err)
	}
	if d := time.Since(start); d < cfg.TTL {
		t.Fatalf("returned after %v, before the TTL", d)
	}
	if h.q.Len() != 0 || h.obs.count(TTLExpired) != 1 {
		t.Fatalf("after TTL: len %d, ttl outcomes %d", h.q.Len(), h.obs.count(TTLExpired))
	}
	// A shorter MaxWait (the route's timeout) wins over the queue's TTL.
	h.q.SetConfig(Config{MaxRequests: 10, MaxBytes: 10, TTL: time.Hour})
	if err := h.q.Wait(context.Background(), Request{MaxWait: 10 * time.Millisecond}); !errors.Is(err, ErrTTL) {
		t.Fatalf("Wait with MaxWait: %v, want ErrTTL", err)
	}
}

func TestCancelLeavesAtOnce(t *testing.T) {
	h := newHarness(t, bigConfig())
	ctx, cancel := context.WithCancel(context.Background())
	h.add(ctx, "gone", Request{Flow: "a"})
	h.add(context.Background(), "stays", Request{Flow: "b"})
	cancel()
	r := h.recv()
	if r.id != "gone" || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %s %v, want gone: context canceled", r.id, r.err)
	}
	if h.q.Len() != 1 || h.obs.count(Canceled) != 1 {
		t.Fatalf("len %d canceled %d, want 1 1", h.q.Len(), h.obs.count(Canceled))
	}
	if got := h.next(); got != "stays" {
		t.Fatalf("dispatched %s", got)
	}
}

func TestFullQueueEviction(t *testing.T) {
	cfg := bigConfig()
	cfg.MaxRequests = 2
	h := newHarness(t, cfg)
	bg := context.Background()
	h.add(bg, "x1", Request{Flow: "x"})
	h.add(bg, "x2", Request{Flow: "x"})

	// Same priority, same flow: nothing ranks below it; refused.
	if err := h.q.Wait(bg, Request{Flow: "x"}); !errors.Is(err, ErrRejected) {
		t.Fatalf("arrival to a full queue from the filling flow: %v, want ErrRejected", err)
	}
	// Same priority, a lighter flow: the heavy flow's newest makes room.
	h.add(bg, "y1", Request{Flow: "y"})
	if r := h.recv(); r.id != "x2" || !errors.Is(r.err, ErrEvicted) {
		t.Fatalf("got %s %v, want x2 evicted", r.id, r.err)
	}
	// x and y hold one each now: another y is refused (it would tip the
	// balance the other way).
	if err := h.q.Wait(bg, Request{Flow: "y"}); !errors.Is(err, ErrRejected) {
		t.Fatalf("balanced flows: %v, want ErrRejected", err)
	}
	// Lower priority is always refused, higher always gets in.
	if err := h.q.Wait(bg, Request{Priority: -1, Flow: "z"}); !errors.Is(err, ErrRejected) {
		t.Fatalf("lower priority arrival: %v, want ErrRejected", err)
	}
	h.add(bg, "hi", Request{Priority: 1, Flow: "y"})
	if r := h.recv(); r.err == nil || !errors.Is(r.err, ErrEvicted) {
		t.Fatalf("got %s %v, want a priority-0 request evicted", r.id, r.err)
	}
	if got := h.next(); got != "hi" {
		t.Fatalf("dispatched %s, want hi", got)
	}
	if h.obs.count(Evicted) != 2 || h.obs.count(Rejected) != 3 {
		t.Fatalf("evicted %d rejected %d, want 2 3", h.obs.count(Evicted), h.obs.count(Rejected))
	}
}

func TestByteCapacity(t *testing.T) {
	cfg := bigConfig()
	cfg.MaxBytes = 100
	h := newHarness(t, cfg)
	bg := context.Background()
	if err := h.q.Wait(bg, Request{Priority: 9, Bytes: 101}); !errors.Is(err, ErrRejected) {
		t.Fatalf("a body larger than the queue: %v", err)
	}
	h.add(bg, "a", Request{Bytes: 40})
	h.add(bg, "b", Request{Bytes: 40})
	// 90 more bytes need both out; a priority-1 arrival evicts both.
	h.add(bg, "big", Request{Priority: 1, Bytes: 90})
	for range 2 {
		if r := h.recv(); !errors.Is(r.err, ErrEvicted) {
			t.Fatalf("%s: %v, want evicted", r.id, r.err)
		}
	}
	// Evicting all eligible (none) would not make room: nothing moves.
	if err := h.q.Wait(bg, Request{Priority: 0, Bytes: 20}); !errors.Is(err, ErrRejected) {
		t.Fatalf("%v, want ErrRejected", err)
	}
	if got := h.next(); got != "big" {
		t.Fatalf("dispatched %s", got)
	}
}

func TestKickDispatchesHeadroom(t *testing.T) {
	h := newHarness(t, bigConfig())
	for i := range 5 {
		h.add(context.Background(), fmt.Sprint(i), Request{})
	}
	h.room.Store(3)
	h.q.Kick()
	for range 3 {
		if r := h.recv(); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if h.q.Len() != 2 {
		t.Fatalf("len %d after a kick with headroom 3 of 5, want 2", h.q.Len())
	}
	h.q.Flush()
	for range 2 {
		if r := h.recv(); r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// TestConcurrentNoLeak runs many waiters through every outcome at once
// and checks each ends exactly once and no goroutine outlives them.
func TestConcurrentNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	cfg := Config{MaxRequests: 50, MaxBytes: 1 << 20, TTL: 20 * time.Millisecond}
	q := New("pool", cfg, nil)
	var room atomic.Int64
	q.SetHeadroom(func() int { return int(room.Load()) })
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for i := range 400 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%15)*time.Millisecond)
			defer cancel()
			if q.Wait(ctx, Request{Priority: int32(i%3 - 1), Flow: fmt.Sprint(i % 7), Bytes: 10}) == nil {
				ok.Add(1)
				q.Kick() // "completes"
			} else {
				failed.Add(1)
			}
		})
		if i%20 == 0 {
			room.Store(int64(i % 3))
			q.Kick()
		}
	}
	wg.Wait()
	if ok.Load()+failed.Load() != 400 || q.Len() != 0 {
		t.Fatalf("ok %d failed %d len %d", ok.Load(), failed.Load(), q.Len())
	}
	q.mu.Lock()
	if q.bytes != 0 || len(q.bands) != 0 {
		t.Fatalf("empty queue keeps %d bytes, %d bands", q.bytes, len(q.bands))
	}
	q.mu.Unlock()
	testwait.Until(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func TestConfigFrom(t *testing.T) {
	if _, on, err := ConfigFrom(nil); on || err != nil {
		t.Fatalf("nil: on %v err %v", on, err)
	}
	cfg, on, err := ConfigFrom(&snapshotv1.WaitQueue{})
	if !on || err != nil || cfg != (Config{MaxRequests: pickerprofile.DefaultQueueRequests, MaxBytes: pickerprofile.DefaultQueueBytes, TTL: pickerprofile.DefaultQueueTTL}) {
		t.Fatalf("empty: %+v %v %v", cfg, on, err)
	}
	cfg, _, err = ConfigFrom(&snapshotv1.WaitQueue{MaxRequests: 5, MaxBytes: 7, Ttl: durationpb.New(time.Second)})
	if err != nil || cfg != (Config{MaxRequests: 5, MaxBytes: 7, TTL: time.Second}) {
		t.Fatalf("set: %+v %v", cfg, err)
	}
	for _, d := range []time.Duration{-time.Second, 0, 2 * time.Hour} {
		if _, _, err := ConfigFrom(&snapshotv1.WaitQueue{Ttl: durationpb.New(d)}); err == nil {
			t.Errorf("ttl %v accepted", d)
		}
	}
}

// TestStatus: the admin view lists bands highest priority first with their
// waiting requests, flows and oldest wait, and the queue's totals.
func TestStatus(t *testing.T) {
	h := newHarness(t, Config{MaxRequests: 10, MaxBytes: 1000, TTL: time.Minute})
	if s := h.q.Status(time.Now()); s.Waiting != 0 || len(s.Bands) != 0 || s.MaxRequests != 10 || s.TTL != Duration(time.Minute) {
		t.Fatalf("empty queue: %+v", s)
	}
	h.add(context.Background(), "a1", Request{Priority: 0, Flow: "a", Bytes: 10})
	h.add(context.Background(), "a2", Request{Priority: 0, Flow: "a", Bytes: 20})
	h.add(context.Background(), "b1", Request{Priority: 0, Flow: "b", Bytes: 30})
	h.add(context.Background(), "c1", Request{Priority: 3, Flow: "c", Bytes: 40})
	h.room.Store(2)
	s := h.q.Status(time.Now().Add(time.Second))
	if s.Pool != "pool" || s.Waiting != 4 || s.Bytes != 100 || s.Headroom != 2 {
		t.Fatalf("totals: %+v", s)
	}
	if len(s.Bands) != 2 || s.Bands[0].Priority != 3 || s.Bands[0].Waiting != 1 || s.Bands[0].Flows != 1 ||
		s.Bands[1].Priority != 0 || s.Bands[1].Waiting != 3 || s.Bands[1].Flows != 2 {
		t.Fatalf("bands: %+v", s.Bands)
	}
	if s.Bands[1].Oldest < Duration(time.Second) {
		t.Fatalf("oldest wait %v, want ≥ 1s (status taken a second later)", time.Duration(s.Bands[1].Oldest))
	}
	set := NewSet(nil)
	set.For("z", "ns/z", &snapshotv1.WaitQueue{})
	set.For("a", "ns/a", &snapshotv1.WaitQueue{})
	if st := set.Statuses(time.Now()); len(st) != 2 || st[0].Pool != "ns/a" || st[1].Pool != "ns/z" {
		t.Fatalf("set statuses: %+v", st)
	}
	h.room.Store(0)
}
