// Command controlplane watches Gateway API and Inference Extension resources
// (from a directory of YAML, or from Kubernetes), translates them into
// per-gateway snapshots and serves them to proxies over delta xDS, together
// with the debug gRPC service that infergatectl talks to.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/infergate/infergate/controlplane/debug"
	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/kvindex"
	"github.com/infergate/infergate/controlplane/metrics"
	"github.com/infergate/infergate/controlplane/source/file"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xds"
	"github.com/infergate/infergate/proto/tracing"
)

type config struct {
	configDir      string
	xdsAddress     string
	adminAddress   string
	pprofAddress   string
	controllerName string
	debounce       time.Duration
	countDelay     time.Duration
	fleet          fleetConfig
	kvMaxBlocks    int
	logFormat      string
	logLevel       string
	kube           kubeConfig
	security       securityConfig
	provision      provisionConfig
	tracing        tracing.Options
}

func main() {
	var cfg config
	flag.StringVar(&cfg.configDir, "config-dir", "", "serve the Kubernetes-style YAML in this directory (watched; no cluster needed)")
	flag.StringVar(&cfg.xdsAddress, "xds-address", "127.0.0.1:18000", "gRPC address serving delta xDS to proxies and the debug service")
	flag.StringVar(&cfg.adminAddress, "admin-address", "127.0.0.1:18001", "HTTP address for /metrics, /healthz, /readyz (and /debug/pprof/ when it is loopback)")
	flag.StringVar(&cfg.pprofAddress, "pprof-address", "", "loopback address serving only /debug/pprof/, for an admin address off loopback")
	flag.StringVar(&cfg.controllerName, "controller-name", translate.DefaultControllerName, "GatewayClass spec.controllerName served by this control plane")
	flag.DurationVar(&cfg.debounce, "debounce", 100*time.Millisecond, "quiet time after a change before re-translating (bounded to 10x under a steady stream of changes)")
	flag.IntVar(&cfg.kvMaxBlocks, "kv-max-blocks-per-server", 1<<18, "KV-cache blocks indexed per model server at most (pools with KV events on); beyond it the oldest stored are dropped")
	flag.DurationVar(&cfg.countDelay, "proxy-count-delay", time.Second, "how long changes in a gateway's proxy count (which sets its proxies' scrape interval) are collected before its Manifest is re-sent")
	flag.StringVar(&cfg.logFormat, "log-format", "text", "log format: text or json")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cfg.kube.register(flag.CommandLine)
	cfg.security.register(flag.CommandLine)
	cfg.provision.register(flag.CommandLine)
	cfg.fleet.register(flag.CommandLine)
	cfg.tracing.Register(flag.CommandLine)
	flag.Parse()

	logger, err := newLogger(cfg.logFormat, cfg.logLevel)
	if err == nil {
		err = cfg.tracing.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("control plane stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	host, _ := os.Hostname()
	traces, err := tracing.Start(ctx, cfg.tracing, "infergate-controlplane", fmt.Sprintf("%s-%d", host, os.Getpid()), logger.With("component", "tracing"))
	if err != nil {
		return err
	}
	defer traces.Close()
	var tracer trace.Tracer = noop.Tracer{}
	if traces != nil {
		tracer = traces.Tracer("github.com/infergate/infergate/controlplane")
	}
	// Without --config-dir the source is Kubernetes.
	var km *kubeMode
	var xdsOpts []xds.Option
	if cfg.configDir == "" {
		var err error
		if km, err = newKubeMode(cfg.kube, cfg.controllerName, logger); err != nil {
			return err
		}
		xdsOpts = km.xdsOptions()
	}
	grpcOpts, secureXDS, ca, err := secureServer(ctx, cfg.security, cfg.provision, km)
	if err != nil {
		return err
	}
	xdsOpts = append(xdsOpts, secureXDS...)
	if km != nil {
		cfg.provision.tracing = cfg.tracing
		km.alsoLead = km.provisioner(cfg.provision, cfg.controllerName, cfg.security.tokenAudience, ca, cfg.security.auth)
	}
	var xdsServer *xds.Server
	m := metrics.New(func() xds.Stats { return xdsServer.Stats() })
	xdsOpts = append(xdsOpts, xds.WithOnNack(m.OnNack), xds.WithOnSynced(m.OnSynced), xds.WithProxyCountDelay(cfg.countDelay),
		xds.WithTracer(tracer))
	xdsServer = xds.NewServer(logger.With("component", "xds"), xdsOpts...)
	if km != nil {
		km.attach(xdsServer)
	}
	grpcServer := grpc.NewServer(append(xds.GRPCServerOptions(), grpcOpts...)...)
	xdsServer.Register(grpcServer)
	fleetOpts := fleet.Options{PushEvery: cfg.fleet.pushEvery, SendsEvery: cfg.fleet.sendsEvery}
	if km != nil {
		// Pools show the problems their proxies report (a tokenizer that
		// does not load), written as soon as they change.
		fleetOpts.ProblemsChanged = km.writer.Kick
	}
	fleetKeys := fleet.NewAggregator(fleetOpts)
	if km != nil {
		km.writer.SetPoolProblems(fleetKeys.Problems)
	}
	fleetLog := logger.With("component", "fleet")
	peers, err := cfg.fleet.startPeers(ctx, fleetKeys, fleetSetup{km: km, security: cfg.security, ca: ca,
		xdsAddress: cfg.provision.xdsAddress, log: fleetLog})
	if err != nil {
		return err
	}
	fleet.NewService(fleetKeys, fleetLog, xdsServer.AuthorizeGateway).WithPeers(peers).Register(grpcServer)
	m.Register(fleet.NewCollector(fleetKeys, peers))
	kvIndex := kvindex.New(ctx, kvindex.Options{MaxBlocksPerServer: cfg.kvMaxBlocks}, logger.With("component", "kvindex"))
	m.Register(kvIndex)
	kvindex.NewService(kvIndex, xdsServer.AuthorizeGateway).Register(grpcServer)
	debug.NewService(xdsServer).WithFleetKeys(fleetKeys).WithKVIndex(kvIndex).Register(grpcServer)

	lis, err := net.Listen("tcp", cfg.xdsAddress)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", cfg.xdsAddress, err)
	}
	tlsOn := cfg.security.certFile != "" || (km != nil && cfg.security.tlsSecret != "")
	if !tlsOn && !isLoopback(lis.Addr()) {
		logger.Warn("xDS and debug gRPC are served in PLAINTEXT on a non-loopback address: anyone who can reach it can read every gateway's configuration, certificates included",
			"address", lis.Addr().String())
	}
	logger.Info("serving xDS and debug gRPC", "address", lis.Addr().String(), "tls", tlsOn, "tokenAuth", km != nil && cfg.security.auth)

	p := &pipeline{log: logger, xds: xdsServer, metrics: m, kv: kvIndex, tracer: tracer, opts: translate.Options{ControllerName: cfg.controllerName}}
	if km != nil {
		p.observe = km.observe
	}
	errc := make(chan error, 4)
	go func() { errc <- serveAdmin(ctx, cfg.adminAddress, m, &p.ready, logger) }()
	if cfg.pprofAddress != "" {
		go func() { errc <- servePprof(ctx, cfg.pprofAddress, logger) }()
	}
	go func() { errc <- grpcServer.Serve(lis) }()
	// Re-publishes a gateway's proxy count as proxies come and go.
	go xdsServer.Run(ctx)
	kubeDone := make(chan struct{})
	go func() {
		if km != nil {
			defer close(kubeDone)
			errc <- km.run(ctx, cfg.debounce, p.applyChanges)
			return
		}
		logger.Info("watching configuration directory", "dir", cfg.configDir)
		errc <- file.Watch(ctx, cfg.configDir, cfg.debounce, logger, p.apply)
	}()

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	if km != nil && ctx.Err() != nil {
		// Let the Kubernetes side release the leader Lease, so another
		// replica takes over at once.
		select {
		case <-kubeDone:
		case <-time.After(5 * time.Second):
		}
	}
	// Proxies keep their last config when we go away; closing streams lets
	// them reconnect to another replica at once instead of timing out.
	grpcServer.Stop()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
