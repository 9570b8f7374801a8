package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/dataplane/fleetkeys"
)

// changeStats are the measured changes of one kind.
type changeStats struct {
	kind      string
	n         int
	latencies []time.Duration
	// bytesPerProxy is what each affected proxy received for a change;
	// otherBytes what all unaffected proxies received meanwhile.
	bytesPerProxy []float64
	// manifestBytesPerProxy is the part of bytesPerProxy that was the
	// gateway's Manifest (re-sent on every change: a count and a digest
	// per resource type).
	manifestBytesPerProxy []float64
	otherBytes            uint64
	cpuPerChange          float64
}

func (s *changeStats) quantile(q float64) time.Duration {
	return durationQuantile(s.latencies, q)
}

func durationQuantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	l := slices.Clone(d)
	slices.Sort(l)
	return l[min(int(q*float64(len(l))), len(l)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	b := slices.Clone(v)
	slices.Sort(b)
	return b[len(b)/2]
}

type results struct {
	cfg                   config
	started, finished     time.Time
	loadBefore, loadAfter float64
	fillTime, initialSync time.Duration
	statusesWritten       time.Duration
	rssAfterSync, rssEnd  float64
	rssPeak               float64
	changes               []*changeStats
	churn                 *churnStats
	cpLog, cpBinary       string
	// fleet are the fleet-exchange phase's cells; loadBeforeFleet the
	// load average as it started.
	fleet           []*fleetCell
	loadBeforeFleet float64
}

// Targets of issue #17.
const (
	targetP99  = 500 * time.Millisecond
	targetRSS  = 1 << 30
	targetRate = 100
)

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
func mib(b float64) string      { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *results) loaded() bool {
	return r.loadBefore > float64(runtime.NumCPU()) || r.loadAfter > float64(runtime.NumCPU())
}

func (r *results) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "initial sync %s", ms(r.initialSync))
	for _, c := range r.changes {
		fmt.Fprintf(&b, "; %s p50 %s p99 %s", c.kind, ms(c.quantile(0.5)), ms(c.quantile(0.99)))
	}
	fmt.Fprintf(&b, "; RSS peak %s", mib(r.rssPeak))
	if r.churn != nil && r.churn.transitions > 0 {
		fmt.Fprintf(&b, "; churn %.0f/s, marker p99 %s", r.churn.achieved, ms(r.churn.markers.quantile(0.99)))
	}
	return b.String()
}

func (r *results) markdown() string {
	c := r.cfg
	w := world{cfg: c}
	var b strings.Builder
	fmt.Fprintf(&b, "# Control plane at cluster scale (`make bench-controlplane`)\n\n")
	box := "quiet box"
	if r.loaded() {
		box = "**loaded box** (other work was running: the numbers are upper bounds)"
	}
	fmt.Fprintf(&b, "Run %s, %s; %d CPUs, load average %.1f before and %.1f after; %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), r.finished.Sub(r.started).Round(time.Second), runtime.NumCPU(), r.loadBefore, r.loadAfter, box)
	fmt.Fprintf(&b, "A real kube-apiserver (envtest) with %d Gateways, %d HTTPRoutes (%d per Gateway, one rule each, to an InferencePool), "+
		"%d InferencePools, %d ready Pods (%d per pool, selected by label), and %d Secrets (16 KiB) and %d ConfigMaps (4 KiB) nothing references. "+
		"The control plane runs as its own process (Kubernetes mode, leader, writing status, `--debounce %s`); %d simulated proxies "+
		"(the proxy's delta xDS client, in the benchmark process), %d per Gateway, each subscribed to its Gateway. "+
		"Filling the API server took %s.\n\n",
		c.gateways, w.routeCount(), c.routesPerGateway, w.poolCount(), w.podCount(), c.podsPerPool, c.noiseSecrets, c.noiseConfigMaps,
		c.debounce, c.gateways*c.proxiesPerGateway, c.proxiesPerGateway, r.fillTime.Round(time.Second))
	fmt.Fprintf(&b, "A change's time runs from the API write being sent (its own latency included) to the last affected proxy holding the complete new state "+
		"(its client ACKs right after). Changes are made one at a time, each waiting for the previous to arrive.\n\n")

	fmt.Fprintf(&b, "| measure | value | target | verdict |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| initial sync (control plane start → all %d proxies complete) | %s | | |\n", c.gateways*c.proxiesPerGateway, ms(r.initialSync))
	fmt.Fprintf(&b, "| initial statuses written (control plane start → the leader's first pass done) | %s | | |\n", ms(r.statusesWritten))
	for _, ch := range r.changes {
		p99 := ch.quantile(0.99)
		fmt.Fprintf(&b, "| %s → affected proxies ACKed, p50 / p99 / max over %d | %s / %s / %s | p99 ≤ %s | %s |\n",
			ch.kind, len(ch.latencies), ms(ch.quantile(0.5)), ms(p99), ms(ch.quantile(1)), ms(targetP99), verdict(p99 <= targetP99))
	}
	fmt.Fprintf(&b, "| control-plane RSS after sync / peak / end | %s / %s / %s | ≤ 1 GiB | %s |\n",
		mib(r.rssAfterSync), mib(r.rssPeak), mib(r.rssEnd), verdict(r.rssPeak <= targetRSS))
	if ch := r.churn; ch != nil && ch.transitions > 0 {
		sustained := ch.achieved >= 0.95*targetRate && ch.drain <= time.Second && ch.markers.quantile(0.99) <= targetP99
		fmt.Fprintf(&b, "| pod churn: readiness transitions per second sustained for %s | %.1f/s (%d, %d failed writes) | %d/s | %s |\n",
			ch.duration.Round(time.Second), ch.achieved, ch.transitions, ch.failed, targetRate, verdict(sustained))
		fmt.Fprintf(&b, "| during churn: a marker pod toggled each second → its proxies, p50 / p99 / max over %d | %s / %s / %s | p99 ≤ %s | %s |\n",
			len(ch.markers.latencies), ms(ch.markers.quantile(0.5)), ms(ch.markers.quantile(0.99)), ms(ch.markers.quantile(1)), ms(targetP99),
			verdict(ch.markers.quantile(0.99) <= targetP99))
		fmt.Fprintf(&b, "| after churn: last write → every proxy holds its Gateway's Ready pods | %s | ≤ 1 s | %s |\n", ms(ch.drain), verdict(ch.drain <= time.Second))
	}
	fmt.Fprintf(&b, "\n| change | bytes per affected proxy (median) | of which the Manifest | bytes to all unaffected proxies (total over the changes) | control-plane CPU per API write |\n|---|---|---|---|---|\n")
	for _, ch := range r.changes {
		if ch.bytesPerProxy == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %d | %.1f ms |\n", ch.kind, median(ch.bytesPerProxy), median(ch.manifestBytesPerProxy), ch.otherBytes, ch.cpuPerChange*1000)
	}
	if ch := r.churn; ch != nil && ch.transitions > 0 {
		fmt.Fprintf(&b, "| pod churn (per transition) | | | | %.1f ms |\n", ch.cpuPerChange*1000)
	}
	fmt.Fprintf(&b, "\nSingle changes start once the leader has written the initial statuses. A pod becoming Ready is one made not Ready in the previous row. "+
		"CPU and RSS are the control plane's own (`process_cpu_seconds_total`, `process_resident_memory_bytes` from its /metrics, RSS sampled every 0.5 s).\n\n")
	r.why(&b)
	b.WriteString(r.fleetMarkdown())
	bin := "`bin/controlplane` of this tree"
	if c.controlplane != "" {
		bin = "`" + r.cpBinary + "`"
	}
	fmt.Fprintf(&b, "Control plane binary: %s.\n\n", bin)
	fmt.Fprintf(&b, "Rerun: `make bench-controlplane` (flags: `cd e2e && go run ./bench/controlplane -h`).\n")
	return b.String()
}

// why states in numbers what a miss comes from, as far as the run can
// tell: the share of the bytes that is the Manifest (re-sent on every
// change), and the control plane's CPU during the churn against the
// cores it shares with the API server, etcd and the simulated proxies.
func (r *results) why(b *strings.Builder) {
	var bytes, manifest []float64
	for _, ch := range r.changes {
		bytes = append(bytes, ch.bytesPerProxy...)
		manifest = append(manifest, ch.manifestBytesPerProxy...)
	}
	if m := median(bytes); m > 0 {
		fmt.Fprintf(b, "Bytes: a change sends each affected proxy the changed resources and its Gateway's Manifest, which holds "+
			"a count and a digest of the resources' names and hashes per resource type (a proxy checks it holds exactly that set; "+
			"a proxy of a release before this form is sent the full list of every resource's name and hash instead); the Manifest "+
			"is %.0f%% of the bytes per change (median %.0f of %.0f), the changed resources the rest.\n\n", 100*median(manifest)/m, median(manifest), m)
	}
	if ch := r.churn; ch != nil && ch.transitions > 0 && ch.duration > 0 {
		cores := ch.cpuPerChange * float64(ch.transitions+int64(len(ch.markers.latencies))) / ch.duration.Seconds()
		fmt.Fprintf(b, "Churn: the control plane used %.2f cores on average during the churn (%.1f ms per transition); the machine "+
			"has %d, shared with the kube-apiserver, etcd and the benchmark (its %d proxies and the writers); load average %.1f after the run.\n\n",
			cores, ch.cpuPerChange*1000, runtime.NumCPU(), r.cfg.gateways*r.cfg.proxiesPerGateway, r.loadAfter)
		if ch.translate.total() > 0 && ch.toAck.total() > 0 {
			fmt.Fprintf(b, "Where a marker's time goes, from the control plane's own histograms over the churn (bucket bounds, so "+
				"\"at most\", within a factor of 2): %d translations (inputs → snapshots built and installed), p50 ≤ %s, p99 ≤ %s; "+
				"%d proxy syncs (a snapshot installed → a proxy ACKed all of it), p50 ≤ %s, p99 ≤ %s. The marker's API write "+
				"itself (sent → answered, among the churn's writes) took p50 %s, p99 %s. The rest of a marker's "+
				"time is the API server's watch delivering the change to the control plane, the debounce (%s quiet, at most "+
				"10× that after the first change) and waiting for the translation in progress.\n\n",
				ch.translate.total(), seconds(ch.translate.quantile(0.5)), seconds(ch.translate.quantile(0.99)),
				ch.toAck.total(), seconds(ch.toAck.quantile(0.5)), seconds(ch.toAck.quantile(0.99)),
				ms(durationQuantile(ch.markerWrites, 0.5)), ms(durationQuantile(ch.markerWrites, 0.99)), r.cfg.debounce)
		}
	}
}

// seconds formats a histogram bound in seconds as milliseconds.
func seconds(s float64) string {
	if math.IsInf(s, 1) {
		return "∞"
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

// fleetMarkdown is the fleet-exchange phase's section (empty without it).
func (r *results) fleetMarkdown() string {
	if len(r.fleet) == 0 {
		return ""
	}
	p := r.cfg.fleet
	var keys float64
	for _, c := range r.fleet {
		keys += c.keysPerSend / float64(len(r.fleet))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Fleet exchange: control-plane cost by proxies per gateway and interval (issue #13)\n\n")
	fmt.Fprintf(&b, "One gateway serving %d requests/s in all, spread evenly over its proxies; prompts of ~%d tokens (%.1f chain keys a send on average), "+
		"each unique from the user message on, after one of 32 shared system prompts. Each proxy runs the default picker profile (the cost model) "+
		"over the pool's %d pods and scrapes each every 50 ms × the proxy count, as a proxy does (%.0f scrapes/s per gateway whatever the count), "+
		"and runs the real fleetkeys client on its own gRPC connection: it reports its sends and scrapes every *interval* (keys every %v), "+
		"and the control plane (`--fleet-sends-push-interval` = *interval*) pushes each proxy the others' sends and scrapes at most that often. "+
		"The flag is process-wide, so each interval has a control-plane process of its own (this tree's binary, `--config-dir` empty, plaintext: the "+
		"fleet service relays what proxies report and does not read the snapshot), serving nothing but these streams; the control planes run side by side and each proxy count is measured at every interval in turn, "+
		"with a gateway of its own. A cell's window is %v, after every stream had its first push and %v more of warm-up.\n\n",
		p.rate, p.promptTokens, keys, r.cfg.podsPerPool, float64(r.cfg.podsPerPool)/0.050, fleetkeys.DefaultKeysEvery, p.window, p.warmup)
	fmt.Fprintf(&b, "| proxies | interval | control-plane CPU (cores) | CP in (KiB/s) | CP out (KiB/s) | out per proxy (KiB/s) | pushes/s per proxy | "+
		"others' sends merged/s per proxy | others' scrapes adopted/s per proxy | pick → merged on another proxy, p50 / p99 | "+
		"benchmark CPU per proxy, with exchange / picks and scrapes only (ms/s) | sends skipped/s | machine CPU busy |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.fleet {
		fmt.Fprintf(&b, "| %d | %v | %.3f | %.0f | %.0f | %.1f | %.0f | %.0f | %.0f | %s / %s | %.1f / %.1f | %.0f | %.0f%% |\n",
			c.proxies, c.interval, c.cpCores, c.rx/1024, c.tx/1024, c.tx/1024/float64(c.proxies), c.pushes, c.merged, c.adopted,
			msf(durationQuantile(c.lags, 0.5)), msf(durationQuantile(c.lags, 0.99)),
			1000*c.benchCores/float64(c.proxies), 1000*c.baseCores/float64(c.proxies), c.skipped, 100*c.busy)
	}
	fmt.Fprintf(&b, "\nControl-plane CPU is utime+stime of its process from /proc/<pid>/stat over the window (10 ms ticks), with nothing else to do; "+
		"bytes are the TCP payload of the proxies' connections (gRPC and HTTP/2 framing, no TLS). The lag runs from the pick to the "+
		"other proxy's fleetkeys client handing the send to its cost model (matched by the send's deepest chain key; same clock). "+
		"All simulated proxies share this benchmark process, so its CPU divided by the proxy count is an upper bound of a proxy's; "+
		"the baseline (the same picks and scrapes without the exchange, %v before each cell) shows how much of it is the exchange. "+
		"The proxies' receiving shares the machine's cores with the control plane here, where in a cluster each proxy has its own: "+
		"with many proxies a push now and then waits for a CPU, so read a p99 lag far above the interval as an upper bound. "+
		"The last column is the whole machine's CPU in use over the window (every process, other work's too): near 100%% the pushes queue "+
		"in this process and the CPU-starved control plane batches more sends per push, so lag and pushes/s then describe the machine more than "+
		"the exchange, and the control plane's CPU is if anything low. %d CPUs, load average %.1f as the phase started.\n\n", p.base, runtime.NumCPU(), r.loadBeforeFleet)
	b.WriteString(r.fleetVerdict())
	return b.String()
}

// fleetVerdict compares, per proxy count, the shortest interval measured
// with the longest: what the shorter one costs and what it buys.
func (r *results) fleetVerdict() string {
	var b strings.Builder
	for _, n := range r.cfg.fleet.proxies {
		var lo, hi *fleetCell
		for _, c := range r.fleet {
			if c.proxies != n {
				continue
			}
			if lo == nil || c.interval < lo.interval {
				lo = c
			}
			if hi == nil || c.interval > hi.interval {
				hi = c
			}
		}
		if lo == nil || lo == hi || hi.cpCores <= 0 || hi.tx <= 0 {
			continue
		}
		fmt.Fprintf(&b, "- %d proxies: %v instead of %v takes %.3f instead of %.3f control-plane cores (%.2f×) and %.1f instead of %.1f MiB/s out "+
			"(%.2f×); a send reaches the other proxies in %s instead of %s at the median, %s instead of %s at p99.\n",
			n, lo.interval, hi.interval, lo.cpCores, hi.cpCores, lo.cpCores/hi.cpCores, lo.tx/(1<<20), hi.tx/(1<<20), lo.tx/hi.tx,
			msf(durationQuantile(lo.lags, 0.5)), msf(durationQuantile(hi.lags, 0.5)), msf(durationQuantile(lo.lags, 0.99)), msf(durationQuantile(hi.lags, 0.99)))
		if busy := max(lo.busy, hi.busy); busy >= saturated {
			fmt.Fprintf(&b, "  The machine was %.0f%% busy in one of these cells: read its lag and pushes as the machine's.\n", 100*busy)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "What the shorter interval costs and buys, per gateway, in this one run (each cell one window; the " +
		"control plane's CPU moves by ±0.05 cores between runs, so judge the ratios over several: " +
		"`go run ./bench/controlplane -fleet-only` repeats the phase alone):\n\n" + b.String() + "\n"
}

// saturated is the machine's busy share from which a fleet cell measured
// a machine with no CPU to spare.
const saturated = 0.9

// msf formats a duration in milliseconds with one decimal.
func msf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
