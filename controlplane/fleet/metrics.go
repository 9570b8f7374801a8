package fleet

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// exchangeStats count what the exchange did since start.
type exchangeStats struct {
	refused, sendsIn, sendsOut, skipped, behind atomic.Int64
	loadsIn, loadsOut                           atomic.Int64
	relayedIn, relayedOut, relayDropped         atomic.Int64
}

func fleetDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("infergate_controlplane_fleet_"+name, help, labels, nil)
}

var (
	descRefused      = fleetDesc("reports_refused_total", "Reports refused whole (malformed or beyond a limit), from proxies and peers.")
	descSendsIn      = fleetDesc("sends_received_total", "Sends (a prompt a proxy sent to an endpoint, as chain keys) and prefilled records (a first token that showed an endpoint's prefill done) received, relayed ones included.")
	descSendsOut     = fleetDesc("sends_pushed_total", "Sends and prefilled records pushed to proxies (each counted once per proxy it went to).")
	descLoadsIn      = fleetDesc("loads_received_total", "Proxies' scrapes of their endpoints received (newer than the endpoint's held one), relayed ones included.")
	descLoadsOut     = fleetDesc("loads_pushed_total", "Proxies' scrapes pushed to the gateway's other proxies (each counted once per proxy it went to).")
	descSkipped      = fleetDesc("sends_skipped_total", "Sends a proxy's stream skipped because they left the gateway's send buffer before it read them (any proxy's, its own included).")
	descBehind       = fleetDesc("streams_behind_total", "Times a proxy's stream fell behind the gateway's send buffer and skipped ahead.")
	descRelayedIn    = fleetDesc("relayed_reports_received_total", "Reports of other replicas' proxies received from peers.")
	descRelayedOut   = fleetDesc("relayed_reports_sent_total", "Reports of this replica's proxies relayed to peers (once per peer).")
	descRelayDropped = fleetDesc("relayed_reports_dropped_total", "Reports not relayed to a peer: its queue was full or they waited too long (peer unreachable or slow).")
	descBuffered     = fleetDesc("buffered_sends", "Sends held for proxies' streams, over all gateways.")
	descBufferedKeys = fleetDesc("buffered_send_keys", "Chain keys of the sends held, over all gateways.")
	descPeers        = fleetDesc("peers", "Peer replicas this replica relays to, by relay stream state.", "state")
	descProblems     = fleetDesc("pool_problems", problemsHelp)
)

const problemsHelp = "Pools of a gateway its proxies report they cannot run as configured (a tokenizer that does not load), counted once per pool and reason; each is an infergate.dev/ProxyProblems condition on the pool."

// Collector exports the exchange's counters and, with peers, their relay
// state (register it with the control plane's registry).
type Collector struct {
	agg   *Aggregator
	peers *Peers
}

// NewCollector reads agg and peers (may be nil) at scrape time.
func NewCollector(agg *Aggregator, peers *Peers) *Collector {
	return &Collector{agg: agg, peers: peers}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRefused, descSendsIn, descSendsOut, descLoadsIn, descLoadsOut, descSkipped, descBehind,
		descRelayedIn, descRelayedOut, descRelayDropped, descBuffered, descBufferedKeys, descPeers, descProblems} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := &c.agg.stats
	for _, m := range []struct {
		d *prometheus.Desc
		v *atomic.Int64
	}{{descRefused, &s.refused}, {descSendsIn, &s.sendsIn}, {descSendsOut, &s.sendsOut},
		{descLoadsIn, &s.loadsIn}, {descLoadsOut, &s.loadsOut}, {descSkipped, &s.skipped},
		{descBehind, &s.behind}, {descRelayedIn, &s.relayedIn}, {descRelayedOut, &s.relayedOut}, {descRelayDropped, &s.relayDropped}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v.Load()))
	}
	sends, keys := c.agg.buffered()
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(sends))
	ch <- prometheus.MustNewConstMetric(descBufferedKeys, prometheus.GaugeValue, float64(keys))
	ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(countPoolProblems(c.agg.Problems())))
	if c.peers != nil {
		up, down := c.peers.connected()
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(up), "connected")
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(down), "disconnected")
	}
}
