package kvindex

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns the client's metrics, read at scrape time:
//
//	infergate_proxy_kv_index_connected                 1 while the KVIndex stream is up
//	infergate_proxy_kv_index_blocks{pool}              block keys the pool's index holds
//	infergate_proxy_kv_index_attached{pool}            1 when the pool's picker matches against the index
//	infergate_proxy_kv_tokenizer_unusable{pool}        1 when the pool's tokenizer does not load (approximate matching)
//	infergate_proxy_kv_tokenizer_load_failures_total   tokenizer files that did not load (each revision once)
//	infergate_proxy_kv_prompts_matched_total{pool}     requests the index judged
//	infergate_proxy_kv_prompts_unjudged_total{pool}    requests it could not (no body or prompt, no server known)
func (c *Client) Collector() prometheus.Collector { return collector{c} }

var (
	descConnected = prometheus.NewDesc("infergate_proxy_kv_index_connected", "1 while the proxy's KVIndex stream from the control plane is up.", nil, nil)
	descBlocks    = prometheus.NewDesc("infergate_proxy_kv_index_blocks", "Block keys in the pool's index as the proxy received it.", []string{"pool"}, nil)
	descAttached  = prometheus.NewDesc("infergate_proxy_kv_index_attached", "1 when the pool's picker matches prompts against the KV index (precise prefix matching).", []string{"pool"}, nil)
	descUnusable  = prometheus.NewDesc("infergate_proxy_kv_tokenizer_unusable", "1 when the pool's tokenizer does not load, so its prefix matching stays approximate.", []string{"pool"}, nil)
	descFailures  = prometheus.NewDesc("infergate_proxy_kv_tokenizer_load_failures_total", "Tokenizer files that did not load (each file revision counted once).", nil, nil)
	descMatched   = prometheus.NewDesc("infergate_proxy_kv_prompts_matched_total", "Requests whose prompt the KV index judged.", []string{"pool"}, nil)
	descUnjudged  = prometheus.NewDesc("infergate_proxy_kv_prompts_unjudged_total", "Requests the KV index could not judge (no prompt it reads, no server indexed yet).", []string{"pool"}, nil)
)

type collector struct{ c *Client }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descBlocks, descAttached, descUnusable, descFailures, descMatched, descUnjudged} {
		ch <- d
	}
}

func (m collector) Collect(ch chan<- prometheus.Metric) {
	st := m.c.State()
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(st.Connected))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(m.c.tokenizerFailures.Load()))
	for name, p := range st.Pools {
		ch <- prometheus.MustNewConstMetric(descBlocks, prometheus.GaugeValue, float64(p.Keys), name)
		ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, b2f(p.Attached), name)
		ch <- prometheus.MustNewConstMetric(descUnusable, prometheus.GaugeValue, b2f(p.TokenizerError != ""), name)
		ch <- prometheus.MustNewConstMetric(descMatched, prometheus.CounterValue, float64(p.Matched), name)
		ch <- prometheus.MustNewConstMetric(descUnjudged, prometheus.CounterValue, float64(p.Unjudged), name)
	}
}
