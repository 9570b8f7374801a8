// Command proxy serves one Gateway: it receives the gateway's snapshot from
// the control plane over delta xDS, binds the gateway's listeners once the
// first complete snapshot has arrived, and routes OpenAI-style traffic,
// picking the model-server replica for every request itself. It keeps
// serving its last good config when the control plane goes away.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/infergate/infergate/dataplane/extproc"
	"github.com/infergate/infergate/dataplane/fleetkeys"
	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/kvindex"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/proto/tracing"
	"github.com/infergate/infergate/proto/xdsclient"
)

type options struct {
	xdsAddress    string
	xdsCAFile     string
	xdsServerName string
	xdsTokenFile  string
	gateway       string
	nodeID        string
	pod           string
	listenAddress string
	adminAddress  string
	healthAddress string
	maxBodyBytes  int64
	bodyBudget    int64
	firstByte     time.Duration
	streamIdle    time.Duration
	notSent       int
	headerTimeout time.Duration
	bodyTimeout   time.Duration
	maxHeader     int
	drainTimeout  time.Duration
	shutdownDelay time.Duration
	modelsTTL     time.Duration
	modelsTimeout time.Duration
	pickerTimeout time.Duration
	logFormat     string
	logLevel      string
	upstreamHTTP1 string
	http1Mode     upstream.HTTP1Mode
	http1Server   string
	http1Srv      http1.Mode
	fleetEvery    time.Duration
	kvIndex       bool
	tracing       tracing.Options
}

func main() {
	var o options
	host, _ := os.Hostname()
	flag.StringVar(&o.xdsAddress, "xds-address", "127.0.0.1:18000", "control plane gRPC address")
	flag.StringVar(&o.xdsCAFile, "xds-ca-file", "", "PEM CA the control plane's certificate must chain to; enables TLS (plaintext without it, for loopback only)")
	flag.StringVar(&o.xdsServerName, "xds-server-name", "", "name to verify in the control plane's certificate (default: the host of --xds-address)")
	flag.StringVar(&o.xdsTokenFile, "xds-token-file", "", "file holding this proxy's audience-bound ServiceAccount token, re-read on every connection (requires --xds-ca-file)")
	flag.StringVar(&o.gateway, "gateway", "", "the Gateway this proxy serves, as namespace/name (required)")
	flag.StringVar(&o.nodeID, "node-id", fmt.Sprintf("%s-%d", host, os.Getpid()), "xDS node id, unique per proxy")
	flag.StringVar(&o.pod, "pod", podFromEnv(), "namespace/name of this proxy's pod, shown by `infergatectl proxies` (default from POD_NAMESPACE/POD_NAME)")
	flag.StringVar(&o.listenAddress, "listen-address", "0.0.0.0", "IP the Gateway's listeners bind to")
	flag.StringVar(&o.adminAddress, "admin-address", "127.0.0.1:19000", "admin HTTP address (/ready, /healthz, /config, /endpoints, /queues, /metrics, /xds); keep it on loopback")
	flag.StringVar(&o.healthAddress, "health-address", "", "address serving only GET /ready and /healthz, for a kubelet's probes (e.g. 0.0.0.0:19001; off when empty)")
	flag.Int64Var(&o.maxBodyBytes, "max-body-bytes", 0, "largest JSON request body read for its model (0 = default 16 MiB); larger bodies get 413")
	flag.Int64Var(&o.bodyBudget, "max-buffered-body-bytes", defaultBodyBudget(), "bytes of request bodies buffered at once across all requests (default: a quarter of the container's memory limit, at least 64 MiB; 1 GiB without a limit; -1 = unbounded); a body beyond it gets 503")
	flag.DurationVar(&o.firstByte, "upstream-first-byte-timeout", pipeline.DefaultFirstByteTimeout, "how long a pool's model server may take to start answering before the request ends with 504 and counts against it (a route's timeouts replace it; -1s = off)")
	flag.DurationVar(&o.streamIdle, "upstream-idle-timeout", pipeline.DefaultStreamIdleTimeout, "how long a pool's model server may go without sending anything once it started answering (between stream events) before the response is cut and counts against it (-1s = off)")
	flag.IntVar(&o.notSent, "not-sent-retries", pipeline.DefaultNotSentRetries, "attempts on other endpoints for a request whose attempt never reached its endpoint (connection refused or reset before a byte went out), whatever the route's retry policy (-1 = none)")
	flag.DurationVar(&o.headerTimeout, "header-read-timeout", 30*time.Second, "time a client has to send its request headers")
	flag.DurationVar(&o.bodyTimeout, "body-read-timeout", 60*time.Second, "time a client has to send its request body (408 after)")
	flag.IntVar(&o.maxHeader, "max-header-bytes", 64<<10, "largest request header block; larger get 431")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests and streams may take to finish")
	flag.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, how long to keep accepting new requests while /ready fails, so load balancers stop sending before the listeners close (e.g. 5s on Kubernetes)")
	flag.DurationVar(&o.modelsTTL, "models-ttl", 30*time.Second, "how long a backend's /v1/models answer is reused for GET /v1/models before it is refreshed in the background")
	flag.DurationVar(&o.modelsTimeout, "models-timeout", 2*time.Second, "how long asking a backend for its /v1/models may take; a backend that does not answer in time is left out of the listing")
	flag.DurationVar(&o.pickerTimeout, "endpoint-picker-timeout", extproc.DefaultTimeout, "longest wait for each answer of a pool's external endpoint picker (endpointPickerRef) when the pool's infergate.dev/endpoint-picker-timeout annotation does not set one; then the pool's failureMode applies")
	flag.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	flag.StringVar(&o.upstreamHTTP1, "upstream-http1", string(upstream.HTTP1Lean), "client for plain HTTP/1.1 upstreams: lean (exchange on the request's goroutine, own connection pool) or stdlib (httputil.ReverseProxy over http.Transport)")
	flag.StringVar(&o.http1Server, "http1-server", string(http1.Lean), "server for HTTP/1 client connections: lean (one goroutine per connection, no per-request hand-offs) or stdlib (net/http's server); HTTP/2 is served by net/http either way")
	flag.BoolVar(&o.kvIndex, "kv-index", true, "follow the control plane's KV-cache block index (pools whose profile turns kvEvents on match prompts against what their model servers hold)")
	flag.DurationVar(&o.fleetEvery, "fleet-keys-interval", fleetkeys.DefaultReportEvery, "how often the proxy reports the prompts it sent where (with their prefill tokens) to the control plane, and with them, every 250 ms or this interval if longer, the prefix affinity keys it used; the control plane shares every pool's keys and sends with all the gateway's proxies so they home shared prefixes alike, estimate the same cached prefixes and see the prefill queued by the others (0: off, each proxy decides from its own traffic, and pools' problems such as a tokenizer that does not load are not reported for their status)")
	o.tracing.Register(flag.CommandLine)
	flag.Parse()

	logger, err := newLogger(o.logFormat, o.logLevel)
	if err == nil && (o.gateway == "" || strings.Count(o.gateway, "/") != 1) {
		err = fmt.Errorf("--gateway namespace/name is required")
	}
	if err == nil {
		o.http1Mode, err = upstream.ParseHTTP1Mode(o.upstreamHTTP1)
	}
	if err == nil {
		o.http1Srv, err = http1.ParseMode(o.http1Server)
	}
	if err == nil {
		err = o.tracing.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, logger); err != nil {
		logger.Error("proxy stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	traces, err := tracing.Start(ctx, o.tracing, "infergate-proxy", o.nodeID, logger.With("component", "tracing"))
	if err != nil {
		return err
	}
	defer traces.Close() // the spans of the last requests still go out
	mgr := server.New(logger.With("component", "server"), server.Options{
		BindAddress:       o.listenAddress,
		HeaderReadTimeout: o.headerTimeout,
		MaxHeaderBytes:    o.maxHeader,
		DrainTimeout:      o.drainTimeout,
		HTTP1Server:       o.http1Srv,
		Pipeline: pipeline.Options{
			MaxBodyBytes:      o.maxBodyBytes,
			BodyReadTimeout:   o.bodyTimeout,
			ModelListTTL:      o.modelsTTL,
			ModelListTimeout:  o.modelsTimeout,
			Upstream:          upstream.Options{HTTP1: o.http1Mode},
			BodyBudget:        o.bodyBudget,
			FirstByteTimeout:  o.firstByte,
			StreamIdleTimeout: o.streamIdle,
			NotSentRetries:    o.notSent,
			PickerTimeout:     o.pickerTimeout,
			Tracer:            traces.Tracer("github.com/infergate/infergate/dataplane/pipeline"),
		},
	})
	handler := configHandler(mgr, logger)
	dialOpts, err := xdsclient.SecureDialOptions(o.xdsCAFile, o.xdsServerName, o.xdsTokenFile)
	if err != nil {
		return err
	}
	if dialOpts == nil {
		if host, _, err := net.SplitHostPort(o.xdsAddress); err != nil || !isLoopbackHost(host) {
			logger.Warn("xDS connection is PLAINTEXT to a non-loopback control plane: set --xds-ca-file (and --xds-token-file)", "xds", o.xdsAddress)
		}
	}
	client := xdsclient.New(xdsclient.Config{
		Addr:        o.xdsAddress,
		NodeID:      o.nodeID,
		Gateway:     o.gateway,
		Pod:         o.pod,
		Handler:     handler,
		DialOptions: dialOpts,
		Logger:      logger.With("component", "xdsclient"),
		// The control plane allows pings this often (xds.GRPCServerOptions).
		KeepaliveTime: 15 * time.Second,
	})

	adminLis, err := net.Listen("tcp", o.adminAddress)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", o.adminAddress, err)
	}
	if tcp, ok := adminLis.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		logger.Warn("admin API bound to a non-loopback address: it exposes config and endpoint state", "address", adminLis.Addr().String())
	}
	// draining makes /ready fail from the moment SIGTERM arrives, while the
	// listeners still finish what they have.
	var draining atomic.Bool
	adminHandler := mgr.AdminHandler()
	ready := readyHandler(&draining, adminHandler)
	mux := http.NewServeMux()
	mux.Handle("/", adminHandler)
	mux.Handle("GET /ready", ready)
	mux.HandleFunc("GET /xds", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"connected": client.Connected(), "types": client.Status()})
	})
	var kvClient *kvindex.Client
	if o.kvIndex {
		kvClient = kvindex.New(kvindex.Config{
			Addr: o.xdsAddress, DialOptions: dialOpts, NodeID: o.nodeID, Gateway: o.gateway,
			Pools: mgr.Schedulers(), Logger: logger.With("component", "kvindex"),
		})
		kvindex.RegisterAdmin(mux, kvClient)
		mgr.Metrics().Registry().MustRegister(kvClient.Collector())
	}
	var keys *fleetkeys.Client
	if o.fleetEvery > 0 {
		cfg := fleetkeys.Config{
			Addr: o.xdsAddress, DialOptions: dialOpts, NodeID: o.nodeID, Gateway: o.gateway,
			Pools: mgr.Schedulers(), ReportEvery: o.fleetEvery, Logger: logger.With("component", "fleetkeys"),
		}
		if kvClient != nil {
			// Pools whose tokenizer does not load show it in their status.
			cfg.Problems = kvClient.Problems
		}
		keys = fleetkeys.New(cfg)
	}
	fleetkeys.RegisterAdmin(mux, mgr.Schedulers(), keys)
	admin := serveHTTP(logger, "admin", adminLis, mux)
	if o.healthAddress != "" {
		healthLis, err := net.Listen("tcp", o.healthAddress)
		if err != nil {
			_ = admin.Close()
			return fmt.Errorf("health listener %s: %w", o.healthAddress, err)
		}
		health := serveHTTP(logger, "health", healthLis, healthMux(ready, adminHandler))
		defer health.Close()
	}
	logger.Info("proxy starting", "gateway", o.gateway, "xds", o.xdsAddress, "admin", adminLis.Addr().String(), "node", o.nodeID)

	xdsCtx, stopXDS := context.WithCancel(context.Background())
	xdsDone := make(chan error, 1)
	go func() { xdsDone <- client.Run(xdsCtx) }()
	fleetDone := make(chan error, 1)
	if keys != nil {
		go func() { fleetDone <- keys.Run(xdsCtx) }()
	} else {
		fleetDone <- nil
	}

	kvDone := make(chan error, 1)
	if kvClient != nil {
		go func() { kvDone <- kvClient.Run(xdsCtx) }()
	} else {
		kvDone <- nil
	}

	<-ctx.Done()
	draining.Store(true)
	if o.shutdownDelay > 0 {
		logger.Info("shutting down: readiness failing, still accepting", "delay", o.shutdownDelay)
		time.Sleep(o.shutdownDelay)
	}
	logger.Info("shutting down: listeners closed, draining in-flight requests", "timeout", o.drainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	err = mgr.Close(drainCtx)
	stopXDS()
	<-xdsDone
	if err := <-fleetDone; err != nil {
		logger.Warn("fleet keys client failed", "err", err)
	}
	if err := <-kvDone; err != nil {
		logger.Warn("kv index client failed", "err", err)
	}
	_ = admin.Close()
	return err
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func podFromEnv() string {
	ns, name := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		return ""
	}
	return ns + "/" + name
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
