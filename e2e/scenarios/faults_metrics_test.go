package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/e2e/modelsim"
)

// badMetricsRun is one measurement of the bad-metrics tests.
type badMetricsRun struct {
	throughput float64 // successful requests per second
	bad        float64 // replica 0's share of them (the bad one, if any)
	healthy    float64 // the mean share of the others
	queued     float64 // requests that waited in the pool's wait queue
}

// badMetricsSetup is one pool of the bad-metrics tests.
type badMetricsSetup struct {
	subnet  int
	fault   string // replica 0's --metrics-fault; "" for a healthy pool
	profile string // the pool's picker profile ("": the default)
}

// badMetricsReplicas is the pool's size: replica 0 is the bad one.
const badMetricsReplicas = 4

// badMetricsWindow is how long the pools are measured under load.
const badMetricsWindow = 8 * time.Second

// startBadMetrics starts a pool of four replicas whose replica 0 serves
// the given broken /metrics and waits until the proxy has the healthy
// replicas' metrics (and has refused the bad one's).
func startBadMetrics(t *testing.T, s badMetricsSetup) *faultGateway {
	t.Helper()
	g := startFaultGateway(t, faultSetup{
		replicas: badMetricsReplicas, subnet: s.subnet, profile: s.profile,
		// Real time, 2 sequences per replica, 32 tokens (~0.4 s) per
		// request: the replicas, not the proxy or a loaded machine,
		// bound the throughput (~20 requests/s).
		simArgs: []string{"--time-scale", "1", "--max-num-seqs", "2"},
		perReplica: func(i int) []string {
			if i == 0 && s.fault != "" {
				return []string{"--metrics-fault", s.fault}
			}
			return nil
		},
	})
	ctx := context.Background()
	harness.Eventually(t, syncTimeout, func() error {
		for i := 1; i < badMetricsReplicas; i++ {
			st, err := g.endpointStatus(ctx, g.endpoint(i))
			if err != nil {
				return err
			}
			if st.Metrics == nil {
				return fmt.Errorf("no metrics from %s yet", st.Address)
			}
		}
		return nil
	})
	if s.fault != "" {
		harness.Eventually(t, syncTimeout, func() error {
			st, err := g.endpointStatus(ctx, g.endpoint(0))
			if err != nil {
				return err
			}
			if st.LastError == "" {
				return fmt.Errorf("%s metrics not refused yet", s.fault)
			}
			t.Logf("%s: the proxy says %q", s.fault, st.LastError)
			return nil
		})
	}
	return g
}

// compareBadMetrics starts a pool with the bad replica and an all-healthy
// twin, loads both at once with the same closed-loop clients (so a
// loaded machine slows both alike) and holds the bad pool to issue #16's
// bounds against its twin: the bad replica's share within 10 points of a
// healthy replica's, throughput at least 0.9× the healthy pool's, and no
// failed request in either.
func compareBadMetrics(t *testing.T, bad, healthy badMetricsSetup, workers int) (b, h badMetricsRun) {
	t.Helper()
	gb, gh := startBadMetrics(t, bad), startBadMetrics(t, healthy)
	ctx := context.Background()
	send := func(g *faultGateway) func(context.Context) outcome {
		return func(ctx context.Context) outcome { return g.chatReq(ctx, false, 32, model) }
	}
	lb, lh := startLoad(workers, send(gb)), startLoad(workers, send(gh))
	time.Sleep(badMetricsWindow)
	outB, outH := lb.stop(), lh.stop()
	measure := func(name string, g *faultGateway, out []outcome) badMetricsRun {
		fr, ok := share(out)
		r := badMetricsRun{throughput: float64(ok) / badMetricsWindow.Seconds(), bad: fr[g.endpoint(0)]}
		for i := 1; i < badMetricsReplicas; i++ {
			r.healthy += fr[g.endpoint(i)] / (badMetricsReplicas - 1)
		}
		queued, err := g.metricValue(ctx, "infergate_proxy_queue_outcomes_total")
		if err != nil {
			t.Fatal(err)
		}
		r.queued = queued
		for _, o := range out {
			if o.err != nil {
				t.Errorf("%s pool: request failed: %v (served by %q)", name, o.err, o.served)
				break
			}
		}
		return r
	}
	b, h = measure(bad.fault, gb, outB), measure("healthy", gh, outH)
	ratio := b.throughput / h.throughput
	t.Logf("%s metrics: %.1f req/s, the healthy twin %.1f (%.2f×); bad replica's share %.1f %%, a healthy one's %.1f %% (twin: %.1f %% / %.1f %%)",
		bad.fault, b.throughput, h.throughput, ratio, 100*b.bad, 100*b.healthy, 100*h.bad, 100*h.healthy)
	if h.throughput == 0 {
		t.Fatal("no throughput from the healthy pool")
	}
	if d := b.bad - b.healthy; d > 0.10 || d < -0.10 {
		t.Errorf("%s metrics: the replica got %.1f %% of the traffic, a healthy one %.1f %% (want within 10 points)", bad.fault, 100*b.bad, 100*b.healthy)
	}
	if ratio < 0.9 {
		t.Errorf("%s metrics: throughput %.1f req/s is %.2f× the healthy pool's %.1f (want ≥ 0.9×)", bad.fault, b.throughput, ratio, h.throughput)
	}
	return b, h
}

// TestFaultBadMetrics: one of four replicas serves broken /metrics —
// negative, NaN or -Inf load, an oversized body, a body that hangs. None
// of it may steer the traffic: the replica's share stays within 10
// points of a healthy replica's (it must neither capture the pool, as
// negative queues once did, nor drop out of it, as unusable metrics once
// did), and the pool's throughput under saturating load stays at least
// 90 % of an all-healthy pool's measured at the same time, with no
// failed request.
func TestFaultBadMetrics(t *testing.T) {
	// 4 replicas × 2 sequences each, three times over: saturated.
	const workers = 24
	for i, fault := range []string{modelsim.MetricsNegative, modelsim.MetricsNaN, modelsim.MetricsInf, modelsim.MetricsOversized, modelsim.MetricsHanging} {
		t.Run(fault, func(t *testing.T) {
			compareBadMetrics(t, badMetricsSetup{subnet: 70 + i, fault: fault}, badMetricsSetup{subnet: 60 + i}, workers)
		})
	}
}

// TestFaultBadMetricsWaitQueue: with the pool's wait queue on and enough
// clients that the healthy replicas report saturation (requests wait in
// the proxy), a replica whose metrics are unusable keeps its share and
// the pool its throughput. The queue's headroom (picker.Headroom) gives
// such a replica no room of its own — it counts as full — so the queue
// lets requests go as the healthy replicas make room, and the picker then
// sends them to the stale replica whenever its own in-flight count is the
// lowest: this holds the bounds as long as the healthy replicas drain.
func TestFaultBadMetricsWaitQueue(t *testing.T) {
	// 10 clients per replica of 2 sequences: 8 waiting on each, past the
	// saturation threshold of 5.
	const workers = 40
	profile := "{scorers: [{name: cost}], queue: {}}"
	b, h := compareBadMetrics(t, badMetricsSetup{subnet: 76, fault: modelsim.MetricsNegative, profile: profile},
		badMetricsSetup{subnet: 66, profile: profile}, workers)
	t.Logf("requests that waited in the queue: %.0f (healthy twin %.0f)", b.queued, h.queued)
	if b.queued == 0 || h.queued == 0 {
		t.Error("no request waited in a queue: the test does not exercise its headroom")
	}
}
