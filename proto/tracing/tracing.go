// Package tracing is the OpenTelemetry setup both infergate binaries share:
// the --tracing-* flags, an OTLP exporter (gRPC or HTTP/protobuf) behind a
// batching span processor, the sampler, the W3C trace-context propagator and
// the attribute keys of infergate's own spans. Tracing is off unless an
// endpoint is given; a Provider that is off hands out no tracer at all, so
// callers can skip every per-request step with one nil check.
package tracing

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols an OTLP endpoint may speak.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Options configure tracing. The zero value is off.
type Options struct {
	// Endpoint is the OTLP collector's URL: http://host:4317 (gRPC,
	// plaintext), https://host:4317 (gRPC over TLS), or for HTTP
	// https://host:4318[/v1/traces]. Empty turns tracing off.
	Endpoint string
	// Protocol is ProtocolGRPC (default) or ProtocolHTTP.
	Protocol string
	// SampleRatio is the fraction of traces started here that are
	// recorded (0–1).
	SampleRatio float64
	// ParentBased follows the sampling decision of a caller's traceparent
	// (a sampled client trace is always continued, an unsampled one never)
	// instead of deciding every trace by SampleRatio alone.
	ParentBased bool
}

// Register adds the --tracing-* flags to fs.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.Endpoint, "tracing-endpoint", "", "OpenTelemetry OTLP collector URL, e.g. http://otel-collector:4317 (gRPC; https:// for TLS); empty: tracing off. "+
		"The standard OTEL_EXPORTER_OTLP_HEADERS, _CERTIFICATE, _TIMEOUT, _COMPRESSION and OTEL_RESOURCE_ATTRIBUTES variables apply")
	fs.StringVar(&o.Protocol, "tracing-protocol", ProtocolGRPC, "OTLP protocol of --tracing-endpoint: grpc or http/protobuf (path defaults to /v1/traces)")
	fs.Float64Var(&o.SampleRatio, "tracing-sample-ratio", 1, "fraction of new traces recorded, 0 to 1")
	fs.BoolVar(&o.ParentBased, "tracing-parent-based", true, "follow the sampling decision of an incoming traceparent header rather than --tracing-sample-ratio")
}

// Args renders o as the flags Register reads, for a process started by
// another (the control plane's provisioned proxies); none when off.
func (o Options) Args() []string {
	if !o.Enabled() {
		return nil
	}
	proto := o.Protocol
	if proto == "" {
		proto = ProtocolGRPC
	}
	return []string{
		"--tracing-endpoint=" + o.Endpoint,
		"--tracing-protocol=" + proto,
		"--tracing-sample-ratio=" + strconv.FormatFloat(o.SampleRatio, 'g', -1, 64),
		"--tracing-parent-based=" + strconv.FormatBool(o.ParentBased),
	}
}

// Enabled reports whether tracing is configured on.
func (o Options) Enabled() bool { return o.Endpoint != "" }

// Validate checks the options; an error names the flag to fix.
func (o Options) Validate() error {
	if !(o.SampleRatio >= 0 && o.SampleRatio <= 1) { // also refuses NaN
		return fmt.Errorf("--tracing-sample-ratio %v: want a number from 0 to 1", o.SampleRatio)
	}
	switch o.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("--tracing-protocol %q: want %s or %s", o.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	if o.Endpoint == "" {
		return nil
	}
	// The exporters silently fall back to localhost on a URL they cannot
	// use, so an operator's typo would trace into nowhere: check here.
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		return fmt.Errorf("--tracing-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--tracing-endpoint %q: want an http:// or https:// URL", o.Endpoint)
	}
	if u.Host == "" || u.Port() == "" {
		return fmt.Errorf("--tracing-endpoint %q: want host:port, e.g. http://otel-collector:4317", o.Endpoint)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--tracing-endpoint %q: credentials, query or fragment are not used by OTLP (headers: OTEL_EXPORTER_OTLP_HEADERS)", o.Endpoint)
	}
	if (o.Protocol == "" || o.Protocol == ProtocolGRPC) && u.Path != "" && u.Path != "/" {
		return fmt.Errorf("--tracing-endpoint %q: an OTLP/gRPC endpoint has no path", o.Endpoint)
	}
	return nil
}

// Provider hands out tracers. A nil *Provider (tracing off) is valid: its
// Tracer is nil and Shutdown does nothing.
type Provider struct {
	tp     *sdktrace.TracerProvider
	logger *slog.Logger
}

// Start builds the provider described by o for a process identified by
// service (service.name) and instance (service.instance.id); nil when
// tracing is off. Spans are exported in batches in the background; call
// Close on exit to flush the last ones. It routes the OpenTelemetry SDK's
// own errors to logger (see ErrorHandler): the SDK reports them through a
// process-wide handler, so Start is for a binary's main.
func Start(ctx context.Context, o Options, service, instance string, logger *slog.Logger) (*Provider, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if !o.Enabled() {
		return nil, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if o.Protocol == ProtocolHTTP {
		ep := o.Endpoint
		if u, _ := url.Parse(ep); u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
			ep = u.String()
		}
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(ep))
	} else {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(o.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing exporter for %s: %w", o.Endpoint, err)
	}
	// OTEL_RESOURCE_ATTRIBUTES (and OTEL_SERVICE_NAME) apply over ours,
	// so an operator can label pods as their tracing backend expects.
	// A malformed OTEL_RESOURCE_ATTRIBUTES still yields what did parse.
	env, _ := resource.New(ctx, resource.WithFromEnv())
	res, err := resource.Merge(resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.instance.id", instance),
	), env)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	sampler := sdktrace.TraceIDRatioBased(o.SampleRatio)
	if o.ParentBased {
		sampler = sdktrace.ParentBased(sampler)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	otel.SetErrorHandler(&ErrorHandler{Logger: logger, Every: time.Minute})
	logger.Info("tracing on", "endpoint", o.Endpoint, "protocol", o.Protocol, "sampleRatio", o.SampleRatio, "parentBased", o.ParentBased)
	return &Provider{tp: tp, logger: logger}, nil
}

// Tracer returns the named tracer, nil when tracing is off.
func (p *Provider) Tracer(name string) trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(name)
}

// Close exports the spans still queued (waiting at most 5 s for the
// collector) and stops the exporter.
func (p *Provider) Close() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.tp.Shutdown(ctx); err != nil {
		p.logger.Warn("tracing: flushing spans on exit failed", "err", err)
	}
}

// Propagator is the W3C trace-context propagator (traceparent, tracestate):
// what a proxy reads from clients and writes to model servers.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// ErrorHandler logs the OpenTelemetry SDK's errors (a collector that is
// down, a full queue) through logger at most once per every, with how many
// were left out in between, so an unreachable collector costs a line per
// interval instead of one per batch. Install it with otel.SetErrorHandler.
type ErrorHandler struct {
	Logger *slog.Logger
	Every  time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// Handle implements otel.ErrorHandler.
func (h *ErrorHandler) Handle(err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.Every {
		h.dropped++
		h.mu.Unlock()
		return
	}
	dropped := h.dropped
	h.last, h.dropped = now, 0
	h.mu.Unlock()
	attrs := []any{"err", err}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped, "over", h.Every.String())
	}
	h.Logger.Warn("tracing: exporting spans failed", attrs...)
}
