// Command controlplane is `make bench-controlplane`: the control plane at
// cluster scale. It starts a real kube-apiserver (envtest), fills it with
// Gateways, HTTPRoutes, InferencePools and ready Pods (and unrelated
// Secrets and ConfigMaps, as a cluster has), runs the control plane as its
// own process in Kubernetes mode, and connects simulated proxies — the
// delta xDS client the proxy runs, in this process — each scoped to its
// Gateway. It measures initial sync, the time from a change (route, pod
// becoming Ready, pool) to all affected proxies holding and ACKing it,
// bytes sent per change per proxy, the control plane's CPU per change and
// resident memory, and a sustained pod churn. A last phase measures the
// fleet exchange of one gateway's proxies (the real fleetkeys clients
// against control-plane processes of its own, one per report/push
// interval: fleetcost.go) by proxy count and interval. It writes a
// Markdown report.
//
//	cd e2e && go run ./bench/controlplane -out bench/results
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type config struct {
	gateways, routesPerGateway, poolsPerGateway, podsPerPool int
	proxiesPerGateway                                        int
	changes                                                  int
	churnRate                                                int
	churnFor                                                 time.Duration
	noiseSecrets, noiseConfigMaps                            int
	debounce                                                 time.Duration
	out                                                      string
	timeout                                                  time.Duration
	// controlplane is the binary to measure (default: the build's).
	controlplane string
	// churnProfile, when set, is where a CPU profile of the control plane
	// during the churn phase is written (from its /debug/pprof/).
	churnProfile string
	// fleet is the fleet-exchange phase (skipFleet: not run; fleetOnly:
	// only it, with no API server, printed rather than written).
	fleet                fleetPlan
	skipFleet, fleetOnly bool
}

func main() {
	var c config
	flag.IntVar(&c.gateways, "gateways", 50, "Gateways, one namespace each")
	flag.IntVar(&c.routesPerGateway, "routes-per-gateway", 100, "HTTPRoutes per Gateway")
	flag.IntVar(&c.poolsPerGateway, "pools-per-gateway", 10, "InferencePools per Gateway")
	flag.IntVar(&c.podsPerPool, "pods-per-pool", 20, "ready Pods per InferencePool")
	flag.IntVar(&c.proxiesPerGateway, "proxies-per-gateway", 2, "simulated proxies per Gateway")
	flag.IntVar(&c.changes, "changes", 100, "changes measured per kind (route, pod Ready, pool)")
	flag.IntVar(&c.churnRate, "churn-rate", 100, "pod readiness transitions per second in the churn phase")
	flag.DurationVar(&c.churnFor, "churn-for", 60*time.Second, "length of the churn phase")
	flag.IntVar(&c.noiseSecrets, "noise-secrets", 1000, "unrelated Secrets (16 KiB each) no Gateway references")
	flag.IntVar(&c.noiseConfigMaps, "noise-configmaps", 1000, "unrelated ConfigMaps (4 KiB each)")
	flag.DurationVar(&c.debounce, "debounce", 20*time.Millisecond, "the control plane's --debounce")
	flag.StringVar(&c.out, "out", "bench/results", "directory for controlplane.md")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "longest wait for proxies to converge on one change")
	flag.StringVar(&c.controlplane, "controlplane", "", "control-plane binary to measure (default: bin/controlplane of this tree), e.g. one built from an older commit for a before/after comparison")
	flag.StringVar(&c.churnProfile, "churn-cpuprofile", "", "write a CPU profile of the control plane during the churn phase to this file (go tool pprof)")
	fleetProxies := flag.String("fleet-proxies", "4,16,64", "fleet-exchange phase: proxies of the gateway, comma-separated")
	fleetIntervals := flag.String("fleet-intervals", "10ms,5ms", "fleet-exchange phase: the proxies' report interval and the control plane's --fleet-sends-push-interval, comma-separated")
	flag.IntVar(&c.fleet.rate, "fleet-rate", 1000, "fleet-exchange phase: requests a second the gateway serves, spread over its proxies")
	flag.IntVar(&c.fleet.promptTokens, "fleet-prompt-tokens", 4000, "fleet-exchange phase: prompt length in tokens (at the picker's 4 bytes a token)")
	flag.DurationVar(&c.fleet.warmup, "fleet-warmup", 2*time.Second, "fleet-exchange phase: warm-up of each cell once every stream is answered")
	flag.DurationVar(&c.fleet.window, "fleet-window", 10*time.Second, "fleet-exchange phase: measured window of each cell")
	flag.DurationVar(&c.fleet.base, "fleet-baseline", 3*time.Second, "fleet-exchange phase: window of each cell's picks and scrapes without the exchange (this process's baseline CPU)")
	flag.StringVar(&c.fleet.profile, "fleet-cpuprofile", "", "fleet-exchange phase: write a CPU profile of the control plane over each cell's window to <this>-<proxies>-<interval>.pprof")
	flag.BoolVar(&c.skipFleet, "skip-fleet", false, "skip the fleet-exchange phase")
	flag.BoolVar(&c.fleetOnly, "fleet-only", false, "run only the fleet-exchange phase (no API server) and print its table instead of writing the report")
	flag.Parse()
	var err error
	if c.fleet.proxies, err = parseInts(*fleetProxies); err == nil {
		c.fleet.intervals, err = parseDurations(*fleetIntervals)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-controlplane:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, c, logger)
	if err != nil {
		logger.Error("bench-controlplane failed", "err", err)
		os.Exit(1)
	}
	if c.fleetOnly {
		fmt.Print(res.fleetMarkdown())
		return
	}
	path := filepath.Join(c.out, "controlplane.md")
	if err := os.WriteFile(path, []byte(res.markdown()), 0o644); err != nil {
		logger.Error("write report", "err", err)
		os.Exit(1)
	}
	fmt.Println(res.summary())
	fmt.Println("report:", path)
}
