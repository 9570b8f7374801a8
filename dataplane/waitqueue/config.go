// Package waitqueue holds a pool's bounded wait queue: requests that would
// be sent to a saturated InferencePool wait in the proxy instead of piling
// up in the model servers' own queues, where the gateway can no longer
// reorder them. Waiting requests are kept in strict priority bands (a
// higher band is always dispatched first) and, within a band, in one FIFO
// flow per x-gateway-inference-fairness-id served round robin, so a tenant
// sending many requests cannot starve one sending few.
//
// The queue is driven by events, never by polling: a request arriving, a
// request to the pool completing (Kick) and a fresh scrape of one of the
// pool's endpoints (Kick) each dispatch as many waiting requests as the
// pool's headroom allows. A waiting request ends in exactly one Outcome.
package waitqueue

import (
	"errors"
	"fmt"
	"time"

	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Config bounds one queue: MaxRequests and MaxBytes (request body bytes)
// bound what waits, TTL is the longest a request waits. The defaults and
// the domain of each bound are the profile contract's (proto/pickerprofile),
// which the control plane validates with too.
type Config = pickerprofile.QueueBounds

// ConfigFrom returns the config of a profile's queue with defaults filled
// in; ok is false when p is nil (no queue).
func ConfigFrom(p *snapshotv1.WaitQueue) (cfg Config, ok bool, err error) {
	return pickerprofile.QueueOf(p)
}

// Outcome is how a request's wait ended.
type Outcome int

// Outcomes, used as the outcome label of the queue metrics.
const (
	// Dispatched: the pool had room; the request goes on to the picker.
	Dispatched Outcome = iota
	// TTLExpired: the request waited its TTL (HTTP 503).
	TTLExpired
	// Evicted: a request of higher priority, or of a lighter flow of the
	// same priority, took its place in a full queue (HTTP 429).
	Evicted
	// Rejected: the queue was full and nothing waiting ranked below the
	// request (HTTP 429).
	Rejected
	// Canceled: the client went away while waiting.
	Canceled
)

func (o Outcome) String() string {
	switch o {
	case Dispatched:
		return "dispatched"
	case TTLExpired:
		return "ttl"
	case Evicted:
		return "evicted"
	case Rejected:
		return "rejected"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Errors Wait returns for outcomes other than Dispatched (Canceled returns
// the context's error).
var (
	ErrTTL      = errors.New("request waited its TTL in the queue")
	ErrEvicted  = errors.New("request evicted from the full queue by one of higher rank")
	ErrRejected = errors.New("queue full")
)

// Observer is told how each wait ended (metrics).
type Observer interface {
	Waited(pool string, priority int32, o Outcome, waited time.Duration)
}
