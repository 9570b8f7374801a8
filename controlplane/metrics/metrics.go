// Package metrics holds the control plane's Prometheus metrics: how long
// translation takes, what the xDS server pushes, how many proxies are
// connected, how many NACK, and how long a change takes to reach an ACK.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Metrics is the control plane's registry and the instruments the pipeline
// and the xDS hooks record into. Counters kept by the xDS server itself are
// read at scrape time rather than mirrored.
type Metrics struct {
	reg *prometheus.Registry

	translateDuration prometheus.Histogram
	translateErrors   prometheus.Counter
	gatewayResources  *prometheus.GaugeVec
	nacks             *prometheus.CounterVec
	syncLatency       prometheus.Histogram
}

// New registers the metrics; stats is read at every scrape (pass the xDS
// server's Stats method).
func New(stats func() xds.Stats) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		translateDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "infergate_controlplane_translate_duration_seconds",
			Help:    "Time to translate all inputs and build every gateway's snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_controlplane_translate_errors_total",
			Help: "Translations whose snapshots could not be built (the previous snapshots kept serving).",
		}),
		gatewayResources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_controlplane_gateway_resources",
			Help: "Resources in each gateway's current snapshot (manifest excluded).",
		}, []string{"gateway"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_controlplane_xds_nacks_by_type_total",
			Help: "NACKs received from proxies, by gateway and resource type.",
		}, []string{"gateway", "type"}),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "infergate_controlplane_change_to_ack_seconds",
			Help:    "Time from a snapshot being installed to a proxy ACKing all of it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.translateDuration, m.translateErrors, m.gatewayResources, m.nacks, m.syncLatency,
		&statsCollector{stats: stats},
	)
	return m
}

// Register adds a collector (e.g. the KV index, read at scrape time).
func (m *Metrics) Register(c prometheus.Collector) { m.reg.MustRegister(c) }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Translated records one pipeline run.
func (m *Metrics) Translated(d time.Duration, resources map[string]int, err error) {
	m.translateDuration.Observe(d.Seconds())
	if err != nil {
		m.translateErrors.Inc()
	}
	m.gatewayResources.Reset()
	for gw, n := range resources {
		m.gatewayResources.WithLabelValues(gw).Set(float64(n))
	}
}

// OnNack is an xds.WithOnNack hook.
func (m *Metrics) OnNack(gateway, _ /* nodeID */, typeURL, _ /* reason */ string) {
	m.nacks.WithLabelValues(gateway, snapshotv1.TypeName(typeURL)).Inc()
}

// OnSynced is an xds.WithOnSynced hook.
func (m *Metrics) OnSynced(_, _, _ string, sinceUpdate time.Duration) {
	m.syncLatency.Observe(sinceUpdate.Seconds())
}

// statsCollector exposes the xDS server's own counters at scrape time.
type statsCollector struct {
	stats func() xds.Stats
}

var (
	descProxies   = prometheus.NewDesc("infergate_controlplane_connected_proxies", "Open delta ADS streams.", nil, nil)
	descStale     = prometheus.NewDesc("infergate_controlplane_stale_proxies", "Connected proxies that do not hold their gateway's current snapshot: a response unanswered, the last one NACKed, or an older version ACKed.", nil, nil)
	descPushes    = prometheus.NewDesc("infergate_controlplane_snapshot_pushes_total", "Per-gateway snapshots installed in the xDS cache.", nil, nil)
	descCounts    = prometheus.NewDesc("infergate_controlplane_proxy_count_pushes_total", "Manifests re-published because a gateway's proxy count changed (the count sets the proxies' scrape interval).", nil, nil)
	descResponses = prometheus.NewDesc("infergate_controlplane_xds_responses_total", "Delta xDS responses sent.", nil, nil)
	descSent      = prometheus.NewDesc("infergate_controlplane_xds_resources_sent_total", "Resources added or updated in delta responses.", nil, nil)
	descRemoved   = prometheus.NewDesc("infergate_controlplane_xds_resources_removed_total", "Resources removed in delta responses.", nil, nil)
	descAcks      = prometheus.NewDesc("infergate_controlplane_xds_acks_total", "ACKs received from proxies.", nil, nil)
	descNacks     = prometheus.NewDesc("infergate_controlplane_xds_nacks_total", "NACKs received from proxies.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProxies, descStale, descPushes, descCounts, descResponses, descSent, descRemoved, descAcks, descNacks} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(descProxies, prometheus.GaugeValue, float64(s.ConnectedProxies))
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, float64(s.StaleProxies))
	ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(s.SnapshotUpdates))
	ch <- prometheus.MustNewConstMetric(descCounts, prometheus.CounterValue, float64(s.ProxyCountUpdates))
	ch <- prometheus.MustNewConstMetric(descResponses, prometheus.CounterValue, float64(s.Responses))
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(s.ResourcesSent))
	ch <- prometheus.MustNewConstMetric(descRemoved, prometheus.CounterValue, float64(s.ResourcesRemoved))
	ch <- prometheus.MustNewConstMetric(descAcks, prometheus.CounterValue, float64(s.Acks))
	ch <- prometheus.MustNewConstMetric(descNacks, prometheus.CounterValue, float64(s.Nacks))
}
