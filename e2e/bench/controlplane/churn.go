package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/retry"

	"github.com/infergate/infergate/e2e/cluster"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// churnStats is the sustained pod churn: readiness transitions at a fixed
// rate, half to not Ready and half back, while one marker pod per second
// is toggled and timed to its Gateway's proxies.
type churnStats struct {
	target, achieved float64
	transitions      int64
	failed           int64
	duration         time.Duration
	markers          changeStats
	// markerWrites is each marker's API write alone: sent → answered.
	markerWrites []time.Duration
	// drain is from the last churn write to every proxy holding exactly
	// the Ready pods of its Gateway.
	drain        time.Duration
	cpuPerChange float64
	// translate and toAck are the control plane's own histograms over the
	// churn: its translations (inputs → snapshots built and installed), and
	// snapshot installed → a proxy ACKed it whole.
	translate, toAck histogram
}

const (
	translateMetric = "infergate_controlplane_translate_duration_seconds"
	toAckMetric     = "infergate_controlplane_change_to_ack_seconds"
)

type podRef struct{ g, k, j int }

func churn(ctx context.Context, cfg config, w *world, c *cluster.Cluster, f *fleet, admin string, log *slog.Logger) (*churnStats, error) {
	st := &churnStats{target: float64(cfg.churnRate), markers: changeStats{kind: "marker Pod toggled during churn"}}
	if cfg.churnRate <= 0 || cfg.churnFor <= 0 {
		return st, nil
	}
	// Pod j = podsPerPool-1 of pool 0 is each Gateway's marker; the churn
	// walks every other pod.
	var pods []podRef
	for j := range cfg.podsPerPool {
		for k := range cfg.poolsPerGateway {
			for g := range cfg.gateways {
				if k == 0 && j == cfg.podsPerPool-1 {
					continue
				}
				pods = append(pods, podRef{g, k, j})
			}
		}
	}
	cpu0, err := scrape(admin, "process_cpu_seconds_total")
	if err != nil {
		return nil, err
	}
	translate0, err := scrapeHistogram(admin, translateMetric)
	if err != nil {
		return nil, err
	}
	toAck0, err := scrapeHistogram(admin, toAckMetric)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var profiled sync.WaitGroup
	if cfg.churnProfile != "" {
		profiled.Go(func() {
			if err := cpuProfile(ctx, admin, cfg.churnFor, cfg.churnProfile); err != nil {
				log.Warn("churn: no CPU profile", "err", err)
			}
		})
	}
	defer profiled.Wait()
	var (
		inflight  = make(chan struct{}, 256)
		writes    sync.WaitGroup
		done      atomic.Int64
		failed    atomic.Int64
		firstErr  atomic.Value
		notReady  []podRef // FIFO of pods this phase made not Ready
		down      = map[podRef]bool{}
		next      int
		markersWG sync.WaitGroup
		markerMu  sync.Mutex
		markerOn  = make([]bool, cfg.gateways) // marker pod not Ready
	)
	var podLocks sync.Map // podRef → *sync.Mutex: one pod's writes in order
	set := func(p podRef, ready bool) {
		inflight <- struct{}{}
		l, _ := podLocks.LoadOrStore(p, &sync.Mutex{})
		mu := l.(*sync.Mutex)
		writes.Go(func() {
			defer func() { <-inflight }()
			mu.Lock()
			defer mu.Unlock()
			err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
				_, err := c.SetPodReady(ctx, w.ns(p.g), w.podName(p.k, p.j), ready)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				return
			}
			done.Add(1)
		})
	}
	interval := time.Second / time.Duration(cfg.churnRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	start := time.Now()
	end := start.Add(cfg.churnFor)
	marker := 0
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			// A pod stays not Ready for about two seconds: longer than a
			// write takes on a loaded box, so its two writes keep their order.
			// A pod is taken down only while it is up, so each one in
			// notReady is down once (small worlds wrap around pods).
			if len(notReady) >= min(2*cfg.churnRate, len(pods)) {
				delete(down, notReady[0])
				set(notReady[0], true)
				notReady = notReady[1:]
			} else {
				p := pods[next%len(pods)]
				for down[p] {
					next++
					p = pods[next%len(pods)]
				}
				next++
				down[p] = true
				notReady = append(notReady, p)
				set(p, false)
			}
		case <-second.C:
			g := marker % cfg.gateways
			marker++
			markerMu.Lock()
			markerOn[g] = !markerOn[g]
			wantReady := !markerOn[g]
			markerMu.Unlock()
			name, ip, eps := w.podName(0, cfg.podsPerPool-1), w.podIP(g, 0, cfg.podsPerPool-1), w.poolResource(g, 0)
			markersWG.Go(func() {
				t0 := time.Now()
				if _, err := c.SetPodReady(ctx, w.ns(g), name, wantReady); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				written := time.Since(t0)
				last, err := until(ctx, f.byGateway[w.gateway(g)], cfg.timeout, func(s snapshotv1.Resources) bool {
					return hasEndpoint(s, eps, ip) == wantReady
				})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				markerMu.Lock()
				st.markers.latencies = append(st.markers.latencies, last.Sub(t0))
				st.markerWrites = append(st.markerWrites, written)
				markerMu.Unlock()
			})
		}
	}
	writes.Wait()
	lastWrite := time.Now()
	st.duration = lastWrite.Sub(start)
	st.transitions, st.failed = done.Load(), failed.Load()
	st.achieved = float64(st.transitions) / st.duration.Seconds()
	markersWG.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	// Every proxy converges on its Gateway's Ready pods.
	downIn := map[int]int{}
	for _, p := range notReady {
		downIn[p.g]++
	}
	for g, on := range markerOn {
		if on {
			downIn[g]++
		}
	}
	var lastConverged time.Time
	for g := range cfg.gateways {
		want := w.endpointsPerGateway() - downIn[g]
		t, err := until(ctx, f.byGateway[w.gateway(g)], cfg.timeout, func(s snapshotv1.Resources) bool {
			_, eps := counts(s)
			return eps == want
		})
		if err != nil {
			return nil, fmt.Errorf("churn: converging after the last write: %w", err)
		}
		if t.After(lastConverged) {
			lastConverged = t
		}
	}
	st.drain = max(lastConverged.Sub(lastWrite), 0)
	cpu1, err := scrape(admin, "process_cpu_seconds_total")
	if err != nil {
		return nil, err
	}
	st.cpuPerChange = (cpu1 - cpu0) / float64(st.transitions+int64(len(st.markers.latencies)))
	translate1, err := scrapeHistogram(admin, translateMetric)
	if err != nil {
		return nil, err
	}
	toAck1, err := scrapeHistogram(admin, toAckMetric)
	if err != nil {
		return nil, err
	}
	st.translate, st.toAck = translate1.since(translate0), toAck1.since(toAck0)
	st.markers.n = len(st.markers.latencies)
	log.Info("churn", "transitions/s", fmt.Sprintf("%.1f", st.achieved), "marker p50", st.markers.quantile(0.5),
		"marker p99", st.markers.quantile(0.99), "converged after last write", st.drain.Round(time.Millisecond))
	return st, nil
}

// cpuProfile writes a CPU profile of the control plane over d (from its
// admin /debug/pprof/, served on loopback) to path.
func cpuProfile(ctx context.Context, admin string, d time.Duration, path string) error {
	secs := max(int(d.Seconds())-1, 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
