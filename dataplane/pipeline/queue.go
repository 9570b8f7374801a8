package pipeline

import (
	"errors"
	"net/http"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/metrics"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/dataplane/waitqueue"
)

// fairnessHeader names the flow a request waits in (canonical form).
const fairnessHeader = "X-Gateway-Inference-Fairness-Id"

// onScrape lets the wait queues of the pools ep serves dispatch what its
// fresh metrics make room for.
func (m *Pipeline) onScrape(ep *endpoints.Endpoint) {
	if st := m.state.Load(); st != nil {
		for _, q := range st.queuesOf[ep] {
			q.Kick()
		}
	}
}

// admit holds a request to a pool with a wait queue until the pool has
// room, and answers it when it is not to be sent: 503 queue_timeout after
// the queue's TTL, 429 queue_full / queue_evicted when the queue had no
// place for it, nothing when the client went away. Sheddable requests of
// a pool that sheds do not wait: the picker refuses them at once when the
// pool is saturated, as without a queue.
func (m *Pipeline) admit(w http.ResponseWriter, c *call) bool {
	r, bs, preq := c.r, c.bs, c.preq
	if s, ok := bs.picker.(interface{ Sheds() bool }); ok && preq.Priority < 0 && s.Sheds() {
		return true
	}
	var flow string
	if v := r.Header[fairnessHeader]; len(v) > 0 {
		flow = v[0]
	}
	// The request's deadline bounds the wait too: what is left of it after
	// the wait is what the forward gets.
	var maxWait time.Duration
	if !c.deadline.IsZero() {
		maxWait = max(time.Until(c.deadline), time.Nanosecond)
	}
	err := bs.queue.Wait(r.Context(), waitqueue.Request{Priority: preq.Priority, Flow: flow, Bytes: int64(len(preq.Body)),
		MaxWait: maxWait})
	var status int
	switch {
	case err == nil:
		return true
	case errors.Is(err, waitqueue.ErrTTL):
		status = http.StatusServiceUnavailable
		m.logger.Warn("request timed out in the gateway queue", "request_id", upstream.RequestID(r), "status", status,
			"backend", bs.cfg.Source, "endpoint", "", "cause", "pool saturated for the queue's TTL")
		openai.WriteError(w, status, openai.TypeOverloaded, "queue_timeout",
			"pool "+bs.cfg.Source+" stayed saturated while the request waited in the gateway queue; retry later")
	case errors.Is(err, waitqueue.ErrEvicted):
		status = http.StatusTooManyRequests
		openai.WriteError(w, status, openai.TypeOverloaded, "queue_evicted",
			"pool "+bs.cfg.Source+" is saturated and a request of higher priority took this one's place in the gateway queue")
	case errors.Is(err, waitqueue.ErrRejected):
		status = http.StatusTooManyRequests
		openai.WriteError(w, status, openai.TypeOverloaded, "queue_full",
			"pool "+bs.cfg.Source+" is saturated and the gateway queue is full")
	default:
		return false // the client is gone: nobody to answer
	}
	m.metrics.Error(preq.Model, preq.TargetModel, status)
	m.metrics.Route(c.route.Route, bs.cfg.Source).Count(status, false)
	return false
}

// queueObserver feeds the wait queues' outcomes to the proxy metrics.
type queueObserver struct{ p *metrics.Proxy }

func (o queueObserver) Waited(pool string, priority int32, out waitqueue.Outcome, waited time.Duration) {
	o.p.QueueWaited(pool, priority, out.String(), waited)
}
