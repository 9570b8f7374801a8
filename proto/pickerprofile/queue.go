package pickerprofile

import (
	"fmt"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Bounds of a pool's wait queue (PickerProfile.queue): the defaults a zero
// or unset field takes, and the largest values a profile may ask for.
const (
	DefaultQueueRequests = 1000
	DefaultQueueBytes    = 128 << 20
	DefaultQueueTTL      = 30 * time.Second
	// MaxQueueRequests and MaxQueueBytes bound what one proxy holds for a
	// pool; MaxQueueTTL how long a request may wait: one held longer is
	// better answered and retried by the client.
	MaxQueueRequests = 1 << 20
	MaxQueueBytes    = 64 << 30
	MaxQueueTTL      = time.Hour
)

// QueueBounds are a wait queue's bounds with the defaults filled in.
type QueueBounds struct {
	// MaxRequests and MaxBytes (request body bytes) bound what waits.
	MaxRequests int
	MaxBytes    int64
	// TTL is the longest a request waits.
	TTL time.Duration
}

// QueueOf returns the bounds of a profile's queue; ok is false when q is
// nil (the pool has no queue). A value out of its domain is an error.
func QueueOf(q *snapshotv1.WaitQueue) (b QueueBounds, ok bool, err error) {
	if q == nil {
		return QueueBounds{}, false, nil
	}
	b = QueueBounds{MaxRequests: DefaultQueueRequests, MaxBytes: DefaultQueueBytes, TTL: DefaultQueueTTL}
	if n := q.GetMaxRequests(); n > MaxQueueRequests {
		return QueueBounds{}, false, fmt.Errorf("queue maxRequests %d: want at most %d", n, MaxQueueRequests)
	} else if n > 0 {
		b.MaxRequests = int(n)
	}
	if n := q.GetMaxBytes(); n > MaxQueueBytes {
		return QueueBounds{}, false, fmt.Errorf("queue maxBytes %d: want at most %d (64 GiB)", n, uint64(MaxQueueBytes))
	} else if n > 0 {
		b.MaxBytes = int64(n)
	}
	if d := q.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return QueueBounds{}, false, fmt.Errorf("queue ttl: %w", err)
		}
		b.TTL = d.AsDuration()
		if b.TTL <= 0 || b.TTL > MaxQueueTTL {
			return QueueBounds{}, false, fmt.Errorf("queue ttl %v: want > 0 and ≤ %v", b.TTL, MaxQueueTTL)
		}
	}
	return b, true, nil
}
