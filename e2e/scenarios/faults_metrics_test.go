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
	bad        float64 // the bad-metrics replica's share of them
	healthy    float64 // the mean share of the others
	queued     float64 // requests that waited in the pool's wait queue
}

// badMetricsSetup is one pool of the bad-metrics tests.
type badMetricsSetup struct {
	subnet  int
	fault   string // replica 0's --metrics-fault; "" for a healthy pool
	workers int    // closed-loop clients
	profile string // the pool's picker profile ("": the default)
}

// badMetricsReplicas is the pool's size: replica 0 is the bad one.
const badMetricsReplicas = 4

// badMetricsWindow is how long each pool is measured under load.
const badMetricsWindow = 8 * time.Second

// runBadMetrics starts a pool of four replicas whose replica 0 serves the
// given broken /metrics, waits until the proxy has the healthy replicas'
// metrics (and has refused the bad one's), loads it with closed-loop
// clients and measures throughput and shares. Every request must succeed.
func runBadMetrics(t *testing.T, s badMetricsSetup) badMetricsRun {
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
	l := startLoad(s.workers, func(ctx context.Context) outcome { return g.chatReq(ctx, false, 32, model) })
	time.Sleep(badMetricsWindow)
	out := l.stop()
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
			t.Errorf("%s: request failed: %v (served by %q)", s.fault, o.err, o.served)
			break
		}
	}
	return r
}

// checkBadMetrics holds a bad-metrics run to issue #16's bounds against
// the healthy pool's: the bad replica's share within 10 points of a
// healthy replica's, throughput at least 0.9× the healthy pool's.
func checkBadMetrics(t *testing.T, fault string, r, healthy badMetricsRun) {
	t.Helper()
	ratio := r.throughput / healthy.throughput
	t.Logf("%s metrics: %.1f req/s (%.2f× healthy), bad replica's share %.1f %%, a healthy one's %.1f %%",
		fault, r.throughput, ratio, 100*r.bad, 100*r.healthy)
	if d := r.bad - r.healthy; d > 0.10 || d < -0.10 {
		t.Errorf("%s metrics: the replica got %.1f %% of the traffic, a healthy one %.1f %% (want within 10 points)", fault, 100*r.bad, 100*r.healthy)
	}
	if ratio < 0.9 {
		t.Errorf("%s metrics: throughput %.1f req/s is %.2f× the healthy pool's %.1f (want ≥ 0.9×)", fault, r.throughput, ratio, healthy.throughput)
	}
}

// TestFaultBadMetrics: one of four replicas serves broken /metrics —
// negative, NaN or -Inf load, an oversized body, a body that hangs. None
// of it may steer the traffic: the replica's share stays within 10
// points of a healthy replica's (it must neither capture the pool, as
// negative queues once did, nor drop out of it, as unusable metrics once
// did), and the pool's throughput under saturating load stays at least
// 90 % of the all-healthy pool's, with no failed request.
func TestFaultBadMetrics(t *testing.T) {
	// 4 replicas × 2 sequences each, three times over: saturated.
	const workers = 24
	var healthy badMetricsRun
	t.Run("healthy", func(t *testing.T) {
		healthy = runBadMetrics(t, badMetricsSetup{subnet: 70, workers: workers})
		t.Logf("all healthy: %.1f req/s, replica 0 share %.1f %%, others %.1f %%", healthy.throughput, 100*healthy.bad, 100*healthy.healthy)
	})
	if healthy.throughput == 0 {
		t.Fatal("no throughput with healthy metrics")
	}
	for i, fault := range []string{modelsim.MetricsNegative, modelsim.MetricsNaN, modelsim.MetricsInf, modelsim.MetricsOversized, modelsim.MetricsHanging} {
		t.Run(fault, func(t *testing.T) {
			checkBadMetrics(t, fault, runBadMetrics(t, badMetricsSetup{subnet: 71 + i, fault: fault, workers: workers}), healthy)
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
	var healthy badMetricsRun
	t.Run("healthy", func(t *testing.T) {
		healthy = runBadMetrics(t, badMetricsSetup{subnet: 76, workers: workers, profile: profile})
		t.Logf("all healthy, queue on: %.1f req/s, replica 0 share %.1f %%, others %.1f %%; %.0f requests waited in the queue",
			healthy.throughput, 100*healthy.bad, 100*healthy.healthy, healthy.queued)
	})
	if healthy.throughput == 0 {
		t.Fatal("no throughput with healthy metrics")
	}
	t.Run(modelsim.MetricsNegative, func(t *testing.T) {
		r := runBadMetrics(t, badMetricsSetup{subnet: 77, fault: modelsim.MetricsNegative, workers: workers, profile: profile})
		t.Logf("%.0f requests waited in the queue", r.queued)
		if r.queued == 0 {
			t.Error("no request waited in the queue: the test does not exercise its headroom")
		}
		checkBadMetrics(t, modelsim.MetricsNegative, r, healthy)
	})
}
