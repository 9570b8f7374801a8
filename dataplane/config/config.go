// Package config holds the proxy's compiled configuration: the snapshot
// resources of one gateway turned into immutable, request-ready structures
// (regexes compiled, references resolved, weights summed). A Config is never
// mutated after Compile returns, so the server can swap it atomically while
// in-flight requests keep using the one they started with.
package config

import (
	"crypto/x509"
	"net/netip"
	"regexp"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Config is one compiled gateway snapshot.
type Config struct {
	// Gateway is "<namespace>/<name>" (the Manifest's name).
	Gateway string `json:"gateway"`
	// Version is the Manifest's content-hash version.
	Version string `json:"version"`
	// Ports are the bound ports in ascending order, each with the Gateway
	// listeners sharing it.
	Ports []*Port `json:"ports"`
	// Backends by resource name.
	Backends map[string]*Backend `json:"backends"`
	// Routes in name order (each is also reachable from its listeners).
	Routes []*Route `json:"routes"`
}

// Port groups the Gateway listeners that share one port. Gateway API lets
// several listeners share a port when their hostnames differ; a request is
// matched to the most specific listener hostname first (listener isolation).
type Port struct {
	Port      uint32      `json:"port"`
	Listeners []*Listener `json:"listeners"`
	// ClientCAs is set when the port's HTTPS listeners check client
	// certificates (the Gateway's spec.tls.frontend applies per port).
	ClientCAs *x509.CertPool `json:"-"`
	// ClientValidation describes it for the JSON dump: "" (none),
	// "AllowValidOnly" or "AllowInsecureFallback".
	ClientValidation string `json:"clientValidation,omitempty"`
}

// Listener is one Gateway listener with the routes attached to it.
type Listener struct {
	Name     string `json:"name"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
	// Hostname is lower-case; empty accepts any host.
	Hostname string `json:"hostname,omitempty"`
	// Routes attached to this listener, in name order. The router sorts
	// them by match precedence.
	Routes []*Route `json:"-"`
	// RouteNames mirrors Routes for the JSON dump.
	RouteNames []string `json:"routes"`
	// Raw keeps the resource for features compiled by later stages (TLS).
	Raw *snapshotv1.Listener `json:"-"`
}

// Route is one HTTPRoute rule.
type Route struct {
	Name        string        `json:"name"`
	Route       string        `json:"route"`
	RuleIndex   uint32        `json:"ruleIndex"`
	Listeners   []string      `json:"listeners"`
	Hostnames   []string      `json:"hostnames,omitempty"`
	Matches     []*Match      `json:"matches"`
	Backends    []*BackendRef `json:"backends"`
	CreatedUnix int64         `json:"createdUnix"`
	// TotalWeight is the sum of backend weights; 0 means every request to
	// this rule gets HTTP 500 (Gateway API: no backend can take traffic).
	TotalWeight uint64 `json:"totalWeight"`
	// Filters of the rule (each backendRef may add its own).
	Filters  Filters  `json:"filters"`
	Timeouts Timeouts `json:"timeouts"`
	// Retry is nil when failed attempts are not repeated.
	Retry *Retry            `json:"retry,omitempty"`
	Raw   *snapshotv1.Route `json:"-"`
}

// Match is one RouteMatch. All of its conditions must hold.
type Match struct {
	// Index of the match within its rule, for precedence tie-breaks.
	Index     int            `json:"index"`
	PathType  MatchType      `json:"pathType"`
	Path      string         `json:"path"`
	PathRegex *regexp.Regexp `json:"-"`
	Headers   []*HeaderMatch `json:"headers,omitempty"`
	Query     []*QueryMatch  `json:"queryParams,omitempty"`
	// Method is upper-case; empty matches any method.
	Method string `json:"method,omitempty"`
}

// MatchType is how a value is compared.
type MatchType int

// Match types, mirroring snapshotv1.MatchType.
const (
	Exact MatchType = iota
	PathPrefix
	RegularExpression
)

func (t MatchType) String() string {
	switch t {
	case Exact:
		return "Exact"
	case PathPrefix:
		return "PathPrefix"
	default:
		return "RegularExpression"
	}
}

// MarshalText makes the JSON dump readable.
func (t MatchType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// HeaderMatch compares one request header.
type HeaderMatch struct {
	Type MatchType `json:"type"`
	// Name is in canonical MIME form so lookups need no allocation.
	Name  string         `json:"name"`
	Value string         `json:"value"`
	Regex *regexp.Regexp `json:"-"`
}

// QueryMatch compares one query parameter.
type QueryMatch struct {
	Type  MatchType      `json:"type"`
	Name  string         `json:"name"`
	Value string         `json:"value"`
	Regex *regexp.Regexp `json:"-"`
}

// BackendRef is one weighted backend of a rule.
type BackendRef struct {
	// Name is the Backend resource name; empty for an unresolved reference.
	Name    string   `json:"name"`
	Backend *Backend `json:"-"`
	Weight  uint32   `json:"weight"`
	// Filters apply only to requests sent to this backend, after the
	// rule's.
	Filters Filters `json:"filters"`
	// InvalidReason says why Backend is nil (requests get HTTP 500).
	InvalidReason string `json:"invalidReason,omitempty"`
}

// BackendKind says how endpoints are picked.
type BackendKind int

// Backend kinds.
const (
	Service BackendKind = iota
	InferencePool
)

// MarshalText makes the JSON dump readable.
func (k BackendKind) MarshalText() ([]byte, error) {
	if k == InferencePool {
		return []byte("InferencePool"), nil
	}
	return []byte("Service"), nil
}

// Backend is a Service port or an InferencePool with its ready endpoints.
type Backend struct {
	Name   string      `json:"name"`
	Kind   BackendKind `json:"kind"`
	Source string      `json:"source"`
	// H2C is true when the backend speaks cleartext HTTP/2.
	H2C bool `json:"h2c,omitempty"`
	// TLS is set when the proxy speaks TLS to the endpoints.
	TLS       *BackendTLS `json:"tls,omitempty"`
	Endpoints []*Endpoint `json:"endpoints"`
	// DefaultEngineType applies to endpoints without their own.
	DefaultEngineType string `json:"defaultEngineType,omitempty"`
	// Models maps a client model name to its rule (pools only).
	Models map[string]*ModelRule `json:"models,omitempty"`
	// Objectives maps an InferenceObjective name to its rule (pools only).
	Objectives map[string]*ModelRule `json:"objectives,omitempty"`
	// Picker is the pool's external endpoint picker; nil when the proxy
	// picks itself.
	Picker *EndpointPicker `json:"endpointPicker,omitempty"`
	// Raw keeps the resource (picker profile) for the later picker stages.
	Raw *snapshotv1.Backend `json:"-"`
}

// IsPool reports whether the backend is an InferencePool.
func (b *Backend) IsPool() bool { return b.Kind == InferencePool }

// Endpoint is one ready endpoint of a backend.
type Endpoint struct {
	// Address is "ip:port" (IPv6 bracketed), the key endpoint state is
	// shared by across backends and config versions.
	Address string `json:"address"`
	// MetricsAddress is "ip:port" of /metrics.
	MetricsAddress string `json:"metricsAddress"`
	Pod            string `json:"pod,omitempty"`
	EngineType     string `json:"engineType,omitempty"`
	Weight         uint32 `json:"weight,omitempty"`
}

// ModelRule maps a client model (or objective) to a priority and targets.
type ModelRule struct {
	Name      string         `json:"name"`
	ModelName string         `json:"modelName,omitempty"`
	Objective string         `json:"objective,omitempty"`
	Priority  int32          `json:"priority"`
	Targets   []*TargetModel `json:"targets,omitempty"`
	// TotalWeight sums target weights; 0 with targets keeps the client's
	// model name.
	TotalWeight uint64 `json:"totalWeight,omitempty"`
}

// TargetModel is one weighted target of a model rule.
type TargetModel struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

// PickTarget chooses a target by weight; n must be uniform in
// [0, TotalWeight). It returns "" when the rule has no usable target.
func (m *ModelRule) PickTarget(n uint64) string {
	for _, t := range m.Targets {
		if n < uint64(t.Weight) {
			return t.Name
		}
		n -= uint64(t.Weight)
	}
	return ""
}

// PickBackend chooses a backend ref by weight; n must be uniform in
// [0, TotalWeight). Callers check TotalWeight > 0 first.
func (r *Route) PickBackend(n uint64) *BackendRef {
	for _, b := range r.Backends {
		if n < uint64(b.Weight) {
			return b
		}
		n -= uint64(b.Weight)
	}
	return nil
}

// Port returns the port group for p, or nil.
func (c *Config) Port(p uint32) *Port {
	for _, pg := range c.Ports {
		if pg.Port == p {
			return pg
		}
	}
	return nil
}

// hostPort formats an address and port the way net.Dial expects.
func hostPort(addr netip.Addr, port uint32) string {
	return netip.AddrPortFrom(addr, uint16(port)).String()
}
