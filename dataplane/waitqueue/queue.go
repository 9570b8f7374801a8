package waitqueue

import (
	"container/list"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request is what the queue needs to know of a request.
type Request struct {
	// Priority: higher is dispatched first (Critical > 0, Standard 0,
	// Sheddable < 0).
	Priority int32
	// Flow is the x-gateway-inference-fairness-id; requests without one
	// share the flow "".
	Flow string
	// Bytes is the request body size, counted against MaxBytes.
	Bytes int64
	// MaxWait, when > 0 and shorter than the queue's TTL, is the TTL of
	// this request (what is left of its request timeout).
	MaxWait time.Duration
}

// Queue is one pool's wait queue. It is safe for concurrent use.
type Queue struct {
	pool string
	obs  Observer
	// headroom returns how many requests the pool takes now (0:
	// saturated); see SetHeadroom.
	headroom atomic.Pointer[func() int]
	// waiting mirrors n so the fast path and Kick need no lock.
	waiting atomic.Int64

	mu    sync.Mutex
	cfg   Config
	bands []*band // highest priority first; empty bands are removed
	n     int
	bytes int64
}

// band holds the flows of one priority; ring is the round-robin order of
// its flows (each non-empty), next the flow whose turn it is.
type band struct {
	priority int32
	flows    map[string]*flow
	ring     []*flow
	next     int
}

type flow struct {
	id    string
	band  *band
	items list.List // of *waiter, oldest first
}

type waiter struct {
	req   Request
	at    time.Time
	ready chan struct{} // closed once outcome is set
	// Set under Queue.mu before ready is closed.
	outcome Outcome
	flow    *flow // nil once no longer queued
	elem    *list.Element
}

// New returns an empty queue for pool. obs may be nil.
func New(pool string, cfg Config, obs Observer) *Queue {
	q := &Queue{pool: pool, obs: obs, cfg: cfg}
	q.SetHeadroom(func() int { return 0 })
	return q
}

// SetHeadroom sets how the queue learns how many requests the pool takes
// now (0 while it is saturated; the server uses picker.Headroom over the
// pool's endpoints) and dispatches what there is room for. f runs under
// the queue's lock: it must be quick and must not call the queue.
func (q *Queue) SetHeadroom(f func() int) {
	q.headroom.Store(&f)
	q.Kick()
}

func (q *Queue) room() int { return (*q.headroom.Load())() }

// SetConfig changes the bounds for requests arriving from now on; requests
// already waiting keep their place and TTL.
func (q *Queue) SetConfig(cfg Config) {
	q.mu.Lock()
	q.cfg = cfg
	q.mu.Unlock()
}

// Len returns the number of waiting requests.
func (q *Queue) Len() int { return int(q.waiting.Load()) }

// Bytes returns the body bytes of the waiting requests.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Lengths calls f with the number of requests waiting per priority.
func (q *Queue) Lengths(f func(priority int32, n int)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, b := range q.bands {
		n := 0
		for _, fl := range b.ring {
			n += fl.items.Len()
		}
		f(b.priority, n)
	}
}

// Wait returns nil when r may be sent to the pool: at once when nothing
// waits and the pool has room, else when r's turn comes and the pool has
// room again. It returns ErrTTL, ErrEvicted or ErrRejected when r is not
// to be sent, or ctx's error when ctx ends first (r leaves the queue at
// once). Every request Wait let through must be followed by Kick when it
// completes, so its capacity goes to the next waiting request.
func (q *Queue) Wait(ctx context.Context, r Request) error {
	// Fast path, no lock: overtaking nobody, and the pool has room.
	if q.waiting.Load() == 0 && q.room() > 0 {
		return nil
	}
	w := &waiter{req: r, at: time.Now(), ready: make(chan struct{})}
	q.mu.Lock()
	ttl := q.cfg.TTL
	if r.MaxWait > 0 {
		ttl = min(ttl, r.MaxWait)
	}
	if !q.makeRoom(r) {
		q.mu.Unlock()
		q.observe(r.Priority, Rejected, 0)
		return ErrRejected
	}
	q.push(w)
	q.dispatch()
	q.mu.Unlock()

	t := time.NewTimer(ttl)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-ctx.Done():
		q.leave(w, Canceled)
	case <-t.C:
		q.leave(w, TTLExpired)
	}
	<-w.ready
	switch w.outcome {
	case Dispatched:
		return nil
	case TTLExpired:
		return ErrTTL
	case Evicted:
		return ErrEvicted
	}
	return ctx.Err()
}

// Kick dispatches waiting requests while the pool has room: call it when a
// request to the pool completes and when fresh metrics arrive.
func (q *Queue) Kick() {
	if q.waiting.Load() == 0 {
		return
	}
	q.mu.Lock()
	q.dispatch()
	q.mu.Unlock()
}

// Flush dispatches every waiting request regardless of load: the queue is
// being switched off or its pool removed.
func (q *Queue) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 {
		q.end(q.bands[0].ring[q.bands[0].next].items.Front().Value.(*waiter), Dispatched)
	}
}

// dispatch sends head-of-line requests while the pool has headroom.
// Headroom is read once: the requests it lets go have not reached an
// endpoint yet, so a second reading would not see them.
func (q *Queue) dispatch() {
	if q.n == 0 {
		return
	}
	for k := q.room(); k > 0 && q.n > 0; k-- {
		b := q.bands[0]
		f := b.ring[b.next]
		emptied := f.items.Len() == 1
		q.end(f.items.Front().Value.(*waiter), Dispatched)
		if !emptied {
			// The flow keeps its place in the ring; the next one's turn.
			// (An emptied flow left the ring and next already points on.)
			b.next = (b.next + 1) % len(b.ring)
		}
	}
}

// leave ends w with o unless it was already dispatched or evicted.
func (q *Queue) leave(w *waiter, o Outcome) {
	q.mu.Lock()
	if w.flow != nil {
		q.end(w, o)
	}
	q.mu.Unlock()
}

// end unlinks a queued w and wakes it with outcome o.
func (q *Queue) end(w *waiter, o Outcome) {
	q.unlink(w)
	w.outcome = o
	close(w.ready)
	q.observe(w.req.Priority, o, time.Since(w.at))
}

func (q *Queue) observe(p int32, o Outcome, d time.Duration) {
	if q.obs != nil {
		q.obs.Waited(q.pool, p, o, d)
	}
}

func (q *Queue) push(w *waiter) {
	i, found := slices.BinarySearchFunc(q.bands, w.req.Priority, func(b *band, p int32) int {
		switch {
		case b.priority > p:
			return -1
		case b.priority < p:
			return 1
		}
		return 0
	})
	if !found {
		q.bands = slices.Insert(q.bands, i, &band{priority: w.req.Priority, flows: map[string]*flow{}})
	}
	b := q.bands[i]
	f := b.flows[w.req.Flow]
	if f == nil {
		f = &flow{id: w.req.Flow, band: b}
		b.flows[f.id] = f
		b.ring = append(b.ring, f)
	}
	w.flow, w.elem = f, f.items.PushBack(w)
	q.n++
	q.bytes += w.req.Bytes
	q.waiting.Store(int64(q.n))
}

// unlink removes w from its flow, and the flow and band when they empty,
// so client-chosen fairness ids do not accumulate.
func (q *Queue) unlink(w *waiter) {
	f := w.flow
	b := f.band
	f.items.Remove(w.elem)
	w.flow, w.elem = nil, nil
	q.n--
	q.bytes -= w.req.Bytes
	q.waiting.Store(int64(q.n))
	if f.items.Len() > 0 {
		return
	}
	delete(b.flows, f.id)
	i := slices.Index(b.ring, f)
	b.ring = slices.Delete(b.ring, i, i+1)
	if i < b.next {
		b.next--
	}
	if b.next >= len(b.ring) {
		b.next = 0
	}
	if len(b.ring) == 0 {
		q.bands = slices.DeleteFunc(q.bands, func(x *band) bool { return x == b })
	}
}
