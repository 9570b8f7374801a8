package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolStat is the state of one InferencePool at scrape time.
type PoolStat struct {
	// Name is the pool as "<namespace>/<name>".
	Name string
	// AvgKVCache is the mean KV-cache utilisation (0–1) and AvgQueue the
	// mean waiting queue over the pods with metrics.
	AvgKVCache, AvgQueue float64
	// ReadyPods is the number of endpoints.
	ReadyPods int

	// Saturation is the pool's saturation as shedding and the wait queue
	// judge it (picker.Saturation): mean over pods of max(waiting/5,
	// kv/0.8), a pod without fresh metrics counting 1.
	Saturation float64
	// Waiting and Running are the model servers' own queues and batches,
	// summed over the pods with fresh metrics; StalePods the pods without.
	Waiting, Running float64
	StalePods        int
	// Queued and QueuedBytes are the requests (and their body bytes)
	// waiting in this proxy's wait queue for the pool.
	Queued      int
	QueuedBytes int64
}

// BytesPerToken turns queued body bytes into the estimated tokens of
// infergate_proxy_queued_tokens: about 4 characters of text per token, as
// the prefix blocks assume (64 characters ≈ 16 tokens). JSON syntax and
// non-prompt fields count as text too, so the estimate errs high.
const BytesPerToken = 4

// Pool metrics come in two kinds, and their names say how to aggregate
// them over a gateway's N proxies:
//
//   - inference_pool_* and infergate_pool_* are each proxy's view of the
//     same pool, from the model servers' scraped metrics: every proxy
//     reports about the same value, so take max (or avg) over proxies,
//     never sum (that would count the pool N times);
//   - infergate_proxy_queued_* count what one proxy holds (its wait
//     queue): sum them over proxies.
//
// The inference_pool_* gauges keep the Inference Extension's single label
// name ("<namespace>/<pool>" here). The infergate_* ones add pool_namespace
// and pool_name: an HPA's metric selector is a Kubernetes label selector,
// whose values cannot hold the "/".
type poolDescs struct {
	avgKV, avgQueue, ready                    *prometheus.Desc
	saturation, load, waiting, running, stale *prometheus.Desc
	queued, queuedBytes, queuedTokens         *prometheus.Desc
}

func newPoolDescs() poolDescs {
	gie := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"name"}, nil)
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"name", "pool_namespace", "pool_name"}, nil)
	}
	const shared = " The same pool seen by each proxy: aggregate with max, not sum."
	const own = " Per proxy: aggregate with sum."
	return poolDescs{
		avgKV:    gie("inference_pool_average_kv_cache_utilization", "Mean KV-cache utilisation of the pool's pods."),
		avgQueue: gie("inference_pool_average_queue_size", "Mean number of requests waiting in the pool's model servers."),
		ready:    gie("inference_pool_ready_pods", "Ready pods in the pool."),
		saturation: d("infergate_pool_saturation", "Pool saturation as shedding judges it: mean over pods of max(waiting/5, "+
			"KV use/0.8), a pod without fresh metrics counting 1; >= 1 is saturated."+shared),
		load: d("infergate_pool_load", "The pool's load in pods at the shedding threshold: the sum over pods of "+
			"max(waiting/5, KV use/0.8), i.e. saturation x ready pods."+shared),
		waiting:     d("infergate_pool_waiting_requests", "Requests waiting in the pool's model servers, summed over pods with fresh metrics."+shared),
		running:     d("infergate_pool_running_requests", "Requests running in the pool's model servers, summed over pods with fresh metrics."+shared),
		stale:       d("infergate_pool_stale_pods", "Pods of the pool without fresh metrics (each counts as saturated)."+shared),
		queued:      d("infergate_proxy_queued_requests", "Requests waiting in this proxy's wait queue for the pool (0 without a queue)."+own),
		queuedBytes: d("infergate_proxy_queued_bytes", "Body bytes of the requests waiting in this proxy's wait queue for the pool."+own),
		queuedTokens: d("infergate_proxy_queued_tokens", "Estimated tokens waiting in this proxy's wait queue for the pool "+
			"(body bytes / 4, so it errs high)."+own),
	}
}

func (d *poolDescs) each(f func(*prometheus.Desc)) {
	for _, x := range []*prometheus.Desc{d.avgKV, d.avgQueue, d.ready, d.saturation, d.load, d.waiting, d.running, d.stale,
		d.queued, d.queuedBytes, d.queuedTokens} {
		f(x)
	}
}

// poolCollector reads pool state at scrape time, so pool gauges cost the
// request path nothing and never report a pool that is gone.
type poolCollector struct{ p *Proxy }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	c.p.poolsDesc.each(func(d *prometheus.Desc) { ch <- d })
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.p.poolsMu.Lock()
	f := c.p.poolSource
	c.p.poolsMu.Unlock()
	if f == nil {
		return
	}
	d := &c.p.poolsDesc
	for _, s := range f() {
		ns, pool, _ := strings.Cut(s.Name, "/")
		gie := func(desc *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, s.Name)
		}
		gauge := func(desc *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, s.Name, ns, pool)
		}
		gie(d.avgKV, s.AvgKVCache)
		gie(d.avgQueue, s.AvgQueue)
		gie(d.ready, float64(s.ReadyPods))
		gauge(d.saturation, s.Saturation)
		gauge(d.load, s.Saturation*float64(s.ReadyPods))
		gauge(d.waiting, s.Waiting)
		gauge(d.running, s.Running)
		gauge(d.stale, float64(s.StalePods))
		gauge(d.queued, float64(s.Queued))
		gauge(d.queuedBytes, float64(s.QueuedBytes))
		gauge(d.queuedTokens, float64(s.QueuedBytes/BytesPerToken))
	}
}
