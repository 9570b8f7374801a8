// Package extproc asks external endpoint pickers (an InferencePool's
// endpointPickerRef) where each request goes, speaking Envoy's ext_proc
// protocol as the Gateway API Inference Extension's Endpoint Picker
// Protocol specifies it: for every request a gRPC stream carries its
// headers and, full-duplex, its body (the proxy does not wait for the
// headers answer, which a picker gives once it has read the body); the
// picker answers with the endpoints to try in order (header and dynamic
// metadata x-gateway-destination-endpoint), header and body mutations or
// a response of its own; the response headers go back with the endpoint
// that served (metadata x-gateway-destination-endpoint-served) and the
// picker may edit them. The response body is not streamed through the
// picker: tokens never wait on it. The stream stays open until the
// response ends, so a picker sees completion when it closes.
//
// A Client keeps one gRPC connection per picker (Service and TLS
// settings) across config versions; a Picker is one pool's view of it.
package extproc

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/proto/endpointpicker"
	"github.com/infergate/infergate/proto/redial"
)

// DefaultTimeout bounds each wait for a picker's answer when its pool
// does not set one (the contract's default).
const DefaultTimeout = endpointpicker.DefaultTimeout

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Timeout is the default answer timeout (DefaultTimeout).
	Timeout time.Duration
	// MaxBodyBytes bounds a request body the picker sends back (default
	// 16 MiB, the proxy's request body limit).
	MaxBodyBytes int
	// Registerer receives the picker metrics (none when nil).
	Registerer prometheus.Registerer
}

// Client holds the connections to every picker the current config names.
type Client struct {
	logger  *slog.Logger
	opts    Options
	metrics *metrics

	mu    sync.Mutex
	conns map[string]*conn // by config.EndpointPicker.Key
	// logs rate-limits failure lines per picker Service, across configs.
	logs map[string]*logLimiter
}

// conn is one picker's gRPC connection, its addresses fed by a manual
// resolver as configs change.
type conn struct {
	cc    *grpc.ClientConn
	res   *manual.Resolver
	addrs string // the addresses last given, joined
}

// NewClient returns a Client with no connections.
func NewClient(logger *slog.Logger, opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	return &Client{logger: logger, opts: opts, metrics: newMetrics(opts.Registerer), conns: map[string]*conn{}, logs: map[string]*logLimiter{}}
}

// Picker returns the picker of pool backend b, whose endpoints (in the
// registry, for this config) are eps. The connection is created on first
// use of the picker's settings and kept while configs name them.
func (c *Client) Picker(b *config.Backend, eps []*endpoints.Endpoint) *Picker {
	cfg := b.Picker
	p := &Picker{client: c, cfg: cfg, pool: b.Source, timeout: cfg.Timeout,
		byAddr: make(map[string]*endpoints.Endpoint, len(eps)), m: c.metrics.forPicker(cfg.Service), log: c.limiter(cfg.Service)}
	if p.timeout == 0 {
		p.timeout = c.opts.Timeout
	}
	subset := make([]*structpb.Value, 0, len(eps))
	for _, e := range eps {
		p.byAddr[e.Address] = e
		subset = append(subset, structpb.NewStringValue(e.Address))
	}
	p.metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		SubsetNamespace: {Fields: map[string]*structpb.Value{SubsetKey: structpb.NewListValue(&structpb.ListValue{Values: subset})}},
	}}
	if cfg.Invalid != "" || len(cfg.Addresses) == 0 {
		return p
	}
	cn, err := c.conn(cfg)
	if err != nil {
		// Only a malformed target fails here, which the config rules
		// out; the picker then counts as unusable.
		p.connErr = err
		return p
	}
	p.conn = cn
	return p
}

func (c *Client) limiter(name string) *logLimiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.logs[name]
	if l == nil {
		l = &logLimiter{}
		c.logs[name] = l
	}
	return l
}

// conn returns the connection for cfg's settings with cfg's addresses.
func (c *Client) conn(cfg *config.EndpointPicker) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := strings.Join(cfg.Addresses, ",")
	if cn := c.conns[cfg.Key]; cn != nil {
		if cn.addrs != addrs {
			cn.res.UpdateState(resolverState(cfg.Addresses))
			cn.addrs = addrs
		}
		return cn, nil
	}
	var creds credentials.TransportCredentials
	switch {
	case cfg.Plaintext:
		creds = insecure.NewCredentials()
	case cfg.TLS != nil:
		tc := cfg.TLS.Config.Clone()
		tc.NextProtos = []string{"h2"}
		creds = credentials.NewTLS(tc)
	default:
		// Pickers serve a self-signed certificate unless given one; the
		// reference gateways do not verify it either. A BackendTLSPolicy
		// on the picker Service turns verification on.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}) //nolint:gosec // see above
	}
	res := manual.NewBuilderWithScheme("infergate-picker")
	res.InitialState(resolverState(cfg.Addresses))
	// A picker that was away is reconnected to within about a second of
	// its return (gRPC's own backoff would wait up to 2 min): meanwhile
	// requests fail fast and the pool's failure mode applies.
	cc, err := redial.Dial(res.Scheme()+":///"+cfg.Service, []grpc.DialOption{grpc.WithTransportCredentials(creds)},
		grpc.WithResolvers(res),
		// Every ready replica of the picker takes streams.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.opts.MaxBodyBytes+1<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("endpoint picker %s: %w", cfg.Service, err)
	}
	cn := &conn{cc: cc, res: res, addrs: addrs}
	c.conns[cfg.Key] = cn
	c.logger.Info("endpoint picker connection", "picker", cfg.Service, "addresses", addrs)
	return cn, nil
}

func resolverState(addrs []string) resolver.State {
	st := resolver.State{Addresses: make([]resolver.Address, 0, len(addrs))}
	for _, a := range addrs {
		st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
	}
	return st
}

// retireAfter is how long a connection no config names stays open for
// the requests of older configs still using it.
const retireAfter = time.Minute

// Retain retires the connections no picker of the current config uses:
// they close after retireAfter, so requests still on them finish.
func (c *Client) Retain(pickers []*Picker) {
	c.retain(pickers, retireAfter)
}

func (c *Client) retain(pickers []*Picker, grace time.Duration) {
	keep := map[*conn]bool{}
	names := map[string]bool{}
	for _, p := range pickers {
		if p.conn != nil {
			keep[p.conn] = true
		}
		names[p.cfg.Service] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.logs {
		if !names[name] {
			delete(c.logs, name)
		}
	}
	for key, cn := range c.conns {
		if !keep[cn] {
			delete(c.conns, key)
			if grace == 0 {
				_ = cn.cc.Close()
			} else {
				time.AfterFunc(grace, func() { _ = cn.cc.Close() })
			}
		}
	}
}

// Close closes every connection at once.
func (c *Client) Close() { c.retain(nil, 0) }
