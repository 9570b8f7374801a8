package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// EndpointStat is one endpoint (model server or Service backend) as this
// proxy sees it at scrape time.
type EndpointStat struct {
	// Address is "ip:port"; Pod "namespace/name" when known.
	Address, Pod string
	// Sent counts the requests this proxy sent there (every attempt).
	Sent     uint64
	InFlight int64
	Ejected  bool
}

// endpointCollector exposes the endpoints read at scrape time: series of
// endpoints gone from the config go with them, so pod churn does not pile
// up series.
type endpointCollector struct {
	sent, inFlight, ejected *prometheus.Desc

	mu     sync.Mutex
	source func() []EndpointStat
}

func newEndpointCollector() *endpointCollector {
	labels := []string{"endpoint", "pod"}
	return &endpointCollector{
		sent: prometheus.NewDesc("infergate_proxy_endpoint_requests_total",
			"Requests (attempts) this proxy sent to each endpoint: where picks went. Per proxy: aggregate with sum.", labels, nil),
		inFlight: prometheus.NewDesc("infergate_proxy_endpoint_in_flight",
			"Requests this proxy has open to each endpoint. Per proxy: aggregate with sum.", labels, nil),
		ejected: prometheus.NewDesc("infergate_proxy_endpoint_ejected",
			"1 while this proxy keeps an endpoint out of picks after repeated failures.", labels, nil),
	}
}

// SetEndpoints sets the function read at each scrape for the endpoint
// series.
func (p *Proxy) SetEndpoints(f func() []EndpointStat) {
	p.endpoints.mu.Lock()
	p.endpoints.source = f
	p.endpoints.mu.Unlock()
}

func (c *endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.inFlight
	ch <- c.ejected
}

func (c *endpointCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f := c.source
	c.mu.Unlock()
	if f == nil {
		return
	}
	for _, e := range f() {
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(e.Sent), e.Address, e.Pod)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(e.InFlight), e.Address, e.Pod)
		ejected := 0.0
		if e.Ejected {
			ejected = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, ejected, e.Address, e.Pod)
	}
}
