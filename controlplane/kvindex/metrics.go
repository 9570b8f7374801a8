package kvindex

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// totals count what every subscription did since start (servers come and
// go; the counters do not go back).
type totals struct {
	batches, events, gaps, replays, resyncs, malformed, unknown, dropped atomic.Int64
}

var (
	descCounter = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("infergate_controlplane_kv_"+name, help, nil, nil)
	}
	descBatches   = descCounter("event_batches_total", "KV-event batches received from model servers (replayed ones included).")
	descEvents    = descCounter("events_total", "KV events (BlockStored, BlockRemoved, AllBlocksCleared) received.")
	descGaps      = descCounter("sequence_gaps_total", "Gaps in a model server's event sequence numbers.")
	descReplays   = descCounter("replays_total", "Gaps closed from a model server's replay socket.")
	descResyncs   = descCounter("resyncs_total", "Times a model server's blocks were dropped to be rebuilt: a gap that could not be replayed, a publisher restart, a malformed batch.")
	descMalformed = descCounter("malformed_total", "Messages or batches that did not parse.")
	descUnknown   = descCounter("unknown_blocks_total", "Events naming a block (or a stored block's parent) the index does not hold.")
	descDropped   = descCounter("dropped_blocks_total", "Blocks dropped because a server's index reached its bound.")
	descBlocks    = prometheus.NewDesc("infergate_controlplane_kv_index_blocks", "Blocks indexed per pool (Backend name), summed over its servers.", []string{"pool"}, nil)
	descSubs      = prometheus.NewDesc("infergate_controlplane_kv_subscriptions", "KV-event subscriptions to model servers, by connection state.", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (x *Index) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBatches, descEvents, descGaps, descReplays, descResyncs, descMalformed, descUnknown, descDropped, descBlocks, descSubs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector, reading the index at scrape time.
func (x *Index) Collect(ch chan<- prometheus.Metric) {
	t := &x.totals
	for _, c := range []struct {
		d *prometheus.Desc
		v *atomic.Int64
	}{{descBatches, &t.batches}, {descEvents, &t.events}, {descGaps, &t.gaps}, {descReplays, &t.replays}, {descResyncs, &t.resyncs}, {descMalformed, &t.malformed}, {descUnknown, &t.unknown}, {descDropped, &t.dropped}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v.Load()))
	}
	for _, p := range x.Stats("") {
		ch <- prometheus.MustNewConstMetric(descBlocks, prometheus.GaugeValue, float64(p.Blocks), p.Pool)
	}
	x.mu.Lock()
	servers := make([]*server, 0, len(x.servers))
	for _, s := range x.servers {
		servers = append(servers, s)
	}
	x.mu.Unlock()
	connected := 0
	for _, s := range servers {
		if s.stats().Connected {
			connected++
		}
	}
	ch <- prometheus.MustNewConstMetric(descSubs, prometheus.GaugeValue, float64(connected), "connected")
	ch <- prometheus.MustNewConstMetric(descSubs, prometheus.GaugeValue, float64(len(servers)-connected), "disconnected")
}
