package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueMetrics are the wait queue's: how many requests wait per pool and
// priority (read at scrape time), and how each wait ended and how long it
// took. Only requests that found the pool saturated wait; the rest pass
// the queue without being counted here.
type queueMetrics struct {
	outcomes *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	lenDesc  *prometheus.Desc

	mu     sync.Mutex
	source func(func(pool string, priority int32, n int))
}

var waitBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newQueueMetrics() *queueMetrics {
	labels := []string{"name", "priority", "outcome"}
	return &queueMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "infergate_proxy", Name: "queue_outcomes_total",
			Help: "Requests that met a saturated pool's wait queue, by how their wait ended: dispatched, ttl, evicted, rejected (queue full), canceled (client gone)."}, labels),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "infergate_proxy", Name: "queue_wait_seconds",
			Help: "Time requests spent in a pool's wait queue, by outcome, in seconds.", Buckets: waitBuckets}, labels),
		lenDesc: prometheus.NewDesc("infergate_proxy_queue_requests", "Requests waiting in a pool's wait queue, per priority.",
			[]string{"name", "priority"}, nil),
	}
}

// QueueWaited records how a wait in pool's queue ended.
func (p *Proxy) QueueWaited(pool string, priority int32, outcome string, waited time.Duration) {
	prio := strconv.Itoa(int(priority))
	p.queue.outcomes.WithLabelValues(pool, prio, outcome).Inc()
	p.queue.wait.WithLabelValues(pool, prio, outcome).Observe(waited.Seconds())
}

// SetQueues sets the function read at each scrape for the queue lengths:
// it calls its argument once per pool and priority with requests waiting.
func (p *Proxy) SetQueues(f func(func(pool string, priority int32, n int))) {
	p.queue.mu.Lock()
	p.queue.source = f
	p.queue.mu.Unlock()
}

func (q *queueMetrics) Describe(ch chan<- *prometheus.Desc) {
	q.outcomes.Describe(ch)
	q.wait.Describe(ch)
	ch <- q.lenDesc
}

func (q *queueMetrics) Collect(ch chan<- prometheus.Metric) {
	q.outcomes.Collect(ch)
	q.wait.Collect(ch)
	q.mu.Lock()
	f := q.source
	q.mu.Unlock()
	if f == nil {
		return
	}
	f(func(pool string, priority int32, n int) {
		ch <- prometheus.MustNewConstMetric(q.lenDesc, prometheus.GaugeValue, float64(n), pool, strconv.Itoa(int(priority)))
	})
}
