package waitqueue

import (
	"slices"
	"strings"
	"time"
)

// Status is a point-in-time view of one pool's queue, for the proxy's admin
// endpoint (`infergatectl proxy queues`).
type Status struct {
	Pool        string   `json:"pool"`
	MaxRequests int      `json:"maxRequests"`
	MaxBytes    int64    `json:"maxBytes"`
	TTL         Duration `json:"ttl"`
	Waiting     int      `json:"waiting"`
	Bytes       int64    `json:"bytes"`
	// Headroom is how many requests the pool would take now (0: saturated,
	// so arrivals wait).
	Headroom int          `json:"headroom"`
	Bands    []BandStatus `json:"bands,omitempty"`
}

// BandStatus is one priority band: its waiting requests, how many fairness
// flows they belong to, and how long the oldest has waited.
type BandStatus struct {
	Priority int32    `json:"priority"`
	Waiting  int      `json:"waiting"`
	Flows    int      `json:"flows"`
	Oldest   Duration `json:"oldestWait"`
}

// Duration marshals as Go's duration text ("1.5s"), which reads better in
// YAML and JSON than nanoseconds.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Status returns the queue's state now.
func (q *Queue) Status(now time.Time) Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Status{Pool: q.pool, MaxRequests: q.cfg.MaxRequests, MaxBytes: q.cfg.MaxBytes, TTL: Duration(q.cfg.TTL),
		Waiting: q.n, Bytes: q.bytes, Headroom: q.room()}
	for _, b := range q.bands { // highest priority first
		bs := BandStatus{Priority: b.priority, Flows: len(b.ring)}
		for _, fl := range b.ring {
			bs.Waiting += fl.items.Len()
			if e := fl.items.Front(); e != nil {
				bs.Oldest = max(bs.Oldest, Duration(now.Sub(e.Value.(*waiter).at)))
			}
		}
		s.Bands = append(s.Bands, bs)
	}
	return s
}

// Statuses returns the status of every pool's queue, by pool label.
func (s *Set) Statuses(now time.Time) []Status {
	var out []Status
	s.Each(func(_ string, q *Queue) { out = append(out, q.Status(now)) })
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Pool, b.Pool) })
	return out
}
