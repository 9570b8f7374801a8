package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// ErrIncomplete reports that the resources do not yet form the complete set
// the Manifest describes. It is not a validation failure: the caller waits
// for more resources instead of NACKing.
var ErrIncomplete = snapshotv1.ErrIncomplete

// Compile turns one gateway's resources (type URL → name → resource) into a
// Config. It checks them against the Manifest first (Resources.Check): one
// Manifest, and exactly the resources it describes with the hashes of the
// bytes they arrived as, otherwise the error wraps ErrIncomplete — so
// leftovers of an older snapshot never leak in. Any other error is a
// validation failure naming the resource and field; the caller keeps its
// previous Config and reports the error (NACK).
func Compile(res snapshotv1.Resources) (*Config, error) {
	mf, err := res.Check()
	if err != nil {
		return nil, err
	}
	var (
		listeners []*snapshotv1.Listener
		routes    []*snapshotv1.Route
		backends  = map[string]*snapshotv1.Backend{}
		endpoints = map[string]*snapshotv1.Endpoints{}
		rules     []*snapshotv1.ModelRule
	)
	for typeURL, byName := range res {
		if typeURL == snapshotv1.TypeManifest {
			continue
		}
		for name, held := range byName {
			switch r := held.Message.(type) {
			case *snapshotv1.Listener:
				listeners = append(listeners, r)
			case *snapshotv1.Route:
				routes = append(routes, r)
			case *snapshotv1.Backend:
				backends[r.GetName()] = r
			case *snapshotv1.Endpoints:
				endpoints[r.GetName()] = r
			case *snapshotv1.ModelRule:
				rules = append(rules, r)
			default:
				return nil, fmt.Errorf("manifest lists %q of unsupported type %s", name, typeURL)
			}
		}
	}
	c := &Config{Gateway: mf.GetName(), Version: mf.GetVersion(), Backends: make(map[string]*Backend, len(backends))}
	for name, b := range backends {
		cb, err := compileBackend(b, endpoints)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", name, err)
		}
		c.Backends[name] = cb
	}
	slices.SortFunc(rules, func(a, b *snapshotv1.ModelRule) int { return strings.Compare(a.GetName(), b.GetName()) })
	for _, r := range rules {
		if err := addModelRule(c.Backends, r); err != nil {
			return nil, fmt.Errorf("model rule %q: %w", r.GetName(), err)
		}
	}
	byListener, err := compileListeners(c, listeners)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(routes, func(a, b *snapshotv1.Route) int { return strings.Compare(a.GetName(), b.GetName()) })
	for _, r := range routes {
		cr, err := compileRoute(r, c.Backends)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		for i, ln := range r.GetListeners() {
			l, ok := byListener[ln]
			if !ok {
				return nil, fmt.Errorf("route %q: listeners[%d]: unknown listener %q", r.GetName(), i, ln)
			}
			l.Routes = append(l.Routes, cr)
			l.RouteNames = append(l.RouteNames, cr.Name)
		}
		c.Routes = append(c.Routes, cr)
	}
	return c, nil
}

func compileListeners(c *Config, ls []*snapshotv1.Listener) (map[string]*Listener, error) {
	slices.SortFunc(ls, func(a, b *snapshotv1.Listener) int { return strings.Compare(a.GetName(), b.GetName()) })
	byName := make(map[string]*Listener, len(ls))
	byPort := map[uint32]*Port{}
	for _, l := range ls {
		if l.GetPort() == 0 || l.GetPort() > 65535 {
			return nil, fmt.Errorf("listener %q: port: %d out of range 1-65535", l.GetName(), l.GetPort())
		}
		host := strings.ToLower(l.GetHostname())
		if err := checkHostname(host); err != nil {
			return nil, fmt.Errorf("listener %q: hostname: %w", l.GetName(), err)
		}
		cl := &Listener{Name: l.GetName(), Port: l.GetPort(), Hostname: host, Raw: l}
		switch l.GetProtocol() {
		case snapshotv1.Listener_HTTP, snapshotv1.Listener_PROTOCOL_UNSPECIFIED:
			cl.Protocol = "HTTP"
		case snapshotv1.Listener_HTTPS:
			cl.Protocol = "HTTPS"
			if len(l.GetCertificates()) == 0 {
				return nil, fmt.Errorf("listener %q: certificates: HTTPS listener without a certificate", l.GetName())
			}
			for i, cert := range l.GetCertificates() {
				if _, err := tls.X509KeyPair(cert.GetCertPem(), cert.GetKeyPem()); err != nil {
					return nil, fmt.Errorf("listener %q: certificates[%d] %q: %w", l.GetName(), i, cert.GetName(), err)
				}
			}
		default:
			return nil, fmt.Errorf("listener %q: protocol: unsupported %v", l.GetName(), l.GetProtocol())
		}
		pg := byPort[l.GetPort()]
		if pg == nil {
			pg = &Port{Port: l.GetPort()}
			byPort[l.GetPort()] = pg
			c.Ports = append(c.Ports, pg)
		}
		if err := setClientValidation(pg, l); err != nil {
			return nil, fmt.Errorf("listener %q: clientValidation: %w", l.GetName(), err)
		}
		for _, other := range pg.Listeners {
			if other.Hostname == cl.Hostname {
				return nil, fmt.Errorf("listener %q: hostname: %q on port %d conflicts with listener %q", l.GetName(), host, l.GetPort(), other.Name)
			}
			if other.Protocol != cl.Protocol {
				return nil, fmt.Errorf("listener %q: protocol: %s on port %d conflicts with %s listener %q", l.GetName(), cl.Protocol, l.GetPort(), other.Protocol, other.Name)
			}
		}
		pg.Listeners = append(pg.Listeners, cl)
		byName[cl.Name] = cl
	}
	slices.SortFunc(c.Ports, func(a, b *Port) int { return int(a.Port) - int(b.Port) })
	return byName, nil
}

func checkHostname(h string) error {
	if h == "" {
		return nil
	}
	rest := h
	if strings.HasPrefix(h, "*.") {
		rest = h[2:]
	}
	if rest == "" || strings.ContainsAny(rest, "*:/ ") {
		return fmt.Errorf("invalid hostname %q", h)
	}
	return nil
}

func compileRoute(r *snapshotv1.Route, backends map[string]*Backend) (*Route, error) {
	cr := &Route{
		Name:        r.GetName(),
		Route:       r.GetRoute(),
		RuleIndex:   r.GetRuleIndex(),
		Listeners:   r.GetListeners(),
		CreatedUnix: r.GetCreatedUnix(),
		Raw:         r,
	}
	for i, h := range r.GetHostnames() {
		h = strings.ToLower(h)
		if h == "" {
			return nil, fmt.Errorf("hostnames[%d]: empty hostname", i)
		}
		if err := checkHostname(h); err != nil {
			return nil, fmt.Errorf("hostnames[%d]: %w", i, err)
		}
		cr.Hostnames = append(cr.Hostnames, h)
	}
	ms := r.GetMatches()
	if len(ms) == 0 {
		ms = []*snapshotv1.RouteMatch{{}}
	}
	for i, m := range ms {
		cm, err := compileMatch(m)
		if err != nil {
			return nil, fmt.Errorf("match %d: %w", i, err)
		}
		cm.Index = i
		cr.Matches = append(cr.Matches, cm)
	}
	for i, b := range r.GetBackends() {
		var err error
		ref := &BackendRef{Name: b.GetBackend(), Weight: b.GetWeight(), InvalidReason: b.GetInvalidReason()}
		if ref.Name != "" {
			ref.Backend = backends[ref.Name]
			if ref.Backend == nil {
				return nil, fmt.Errorf("backends[%d]: unknown backend %q", i, ref.Name)
			}
		} else if ref.InvalidReason == "" {
			ref.InvalidReason = "unresolved backend reference"
		}
		if ref.Filters, err = compileFilters(b.GetFilters(), backends); err != nil {
			return nil, fmt.Errorf("backends[%d]: %w", i, err)
		}
		cr.TotalWeight += uint64(ref.Weight)
		cr.Backends = append(cr.Backends, ref)
	}
	var err error
	if cr.Filters, err = compileFilters(r.GetFilters(), backends); err != nil {
		return nil, err
	}
	cr.Timeouts = compileTimeouts(r.GetTimeouts())
	if cr.Retry, err = compileRetry(r.GetRetry()); err != nil {
		return nil, err
	}
	return cr, nil
}

func compileMatch(m *snapshotv1.RouteMatch) (*Match, error) {
	cm := &Match{PathType: PathPrefix, Path: "/", Method: strings.ToUpper(m.GetMethod())}
	if p := m.GetPath(); p != nil {
		switch p.GetType() {
		case snapshotv1.MatchType_EXACT, snapshotv1.MatchType_PATH_PREFIX, snapshotv1.MatchType_MATCH_TYPE_UNSPECIFIED:
			cm.PathType = PathPrefix
			if p.GetType() == snapshotv1.MatchType_EXACT {
				cm.PathType = Exact
			}
			cm.Path = p.GetValue()
			if cm.Path == "" {
				cm.Path = "/"
			}
			if cm.Path[0] != '/' {
				return nil, fmt.Errorf("path: %q must start with /", cm.Path)
			}
			if cm.PathType == PathPrefix && len(cm.Path) > 1 {
				// "/foo/" and "/foo" match the same paths (element-wise).
				cm.Path = strings.TrimRight(cm.Path, "/")
				if cm.Path == "" {
					cm.Path = "/"
				}
			}
		case snapshotv1.MatchType_REGULAR_EXPRESSION:
			re, err := anchored(p.GetValue())
			if err != nil {
				return nil, fmt.Errorf("path: invalid regex %q: %w", p.GetValue(), err)
			}
			cm.PathType, cm.Path, cm.PathRegex = RegularExpression, p.GetValue(), re
		default:
			return nil, fmt.Errorf("path: unsupported match type %v", p.GetType())
		}
	}
	for i, h := range m.GetHeaders() {
		if h.GetName() == "" {
			return nil, fmt.Errorf("headers[%d]: empty name", i)
		}
		hm := &HeaderMatch{Type: Exact, Name: http.CanonicalHeaderKey(h.GetName()), Value: h.GetValue()}
		switch h.GetType() {
		case snapshotv1.MatchType_EXACT, snapshotv1.MatchType_MATCH_TYPE_UNSPECIFIED:
		case snapshotv1.MatchType_REGULAR_EXPRESSION:
			re, err := anchored(h.GetValue())
			if err != nil {
				return nil, fmt.Errorf("headers[%d] %q: invalid regex %q: %w", i, h.GetName(), h.GetValue(), err)
			}
			hm.Type, hm.Regex = RegularExpression, re
		default:
			return nil, fmt.Errorf("headers[%d] %q: unsupported match type %v", i, h.GetName(), h.GetType())
		}
		cm.Headers = append(cm.Headers, hm)
	}
	for i, q := range m.GetQueryParams() {
		if q.GetName() == "" {
			return nil, fmt.Errorf("queryParams[%d]: empty name", i)
		}
		qm := &QueryMatch{Type: Exact, Name: q.GetName(), Value: q.GetValue()}
		switch q.GetType() {
		case snapshotv1.MatchType_EXACT, snapshotv1.MatchType_MATCH_TYPE_UNSPECIFIED:
		case snapshotv1.MatchType_REGULAR_EXPRESSION:
			re, err := anchored(q.GetValue())
			if err != nil {
				return nil, fmt.Errorf("queryParams[%d] %q: invalid regex %q: %w", i, q.GetName(), q.GetValue(), err)
			}
			qm.Type, qm.Regex = RegularExpression, re
		default:
			return nil, fmt.Errorf("queryParams[%d] %q: unsupported match type %v", i, q.GetName(), q.GetType())
		}
		cm.Query = append(cm.Query, qm)
	}
	return cm, nil
}

// anchored compiles a Gateway API regular expression with whole-value
// semantics (as Envoy's RE2 safe_regex does), so "/v1/.*" does not match
// "/x/v1/a".
func anchored(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

func compileBackend(b *snapshotv1.Backend, eps map[string]*snapshotv1.Endpoints) (*Backend, error) {
	cb := &Backend{
		Name:              b.GetName(),
		Source:            b.GetSource(),
		H2C:               b.GetAppProtocol() == snapshotv1.Backend_H2C,
		DefaultEngineType: b.GetDefaultEngineType(),
		Raw:               b,
	}
	switch b.GetKind() {
	case snapshotv1.Backend_SERVICE:
		cb.Kind = Service
	case snapshotv1.Backend_INFERENCE_POOL:
		cb.Kind = InferencePool
		if cb.DefaultEngineType == "" {
			cb.DefaultEngineType = "vllm"
		}
	default:
		return nil, fmt.Errorf("kind: unsupported %v", b.GetKind())
	}
	if t := b.GetTls(); t != nil {
		var err error
		if cb.TLS, err = compileBackendTLS(t); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	if p := b.GetEndpointPicker(); p != nil {
		if cb.Kind != InferencePool {
			return nil, errors.New("endpointPicker: only an InferencePool has one")
		}
		var err error
		if cb.Picker, err = compileEndpointPicker(p, eps); err != nil {
			return nil, fmt.Errorf("endpointPicker: %w", err)
		}
	}
	if b.GetEndpoints() == "" {
		return cb, nil
	}
	set, ok := eps[b.GetEndpoints()]
	if !ok {
		return nil, fmt.Errorf("endpoints: unknown Endpoints resource %q", b.GetEndpoints())
	}
	seen := map[string]bool{}
	for i, e := range set.GetEndpoints() {
		addr, err := endpointAddr(set, i)
		if err != nil {
			return nil, err
		}
		mp := e.GetMetricsPort()
		if mp == 0 {
			mp = e.GetPort()
		} else if mp > 65535 {
			return nil, fmt.Errorf("endpoints %q: endpoints[%d]: metricsPort: %d out of range 1-65535", set.GetName(), i, mp)
		}
		ce := &Endpoint{
			Address:        hostPort(addr.Unmap(), e.GetPort()),
			MetricsAddress: hostPort(addr.Unmap(), mp),
			Pod:            e.GetPod(),
			EngineType:     e.GetEngineType(),
			Weight:         e.GetWeight(),
		}
		if ce.EngineType == "" {
			ce.EngineType = cb.DefaultEngineType
		}
		if seen[ce.Address] {
			return nil, fmt.Errorf("endpoints %q: endpoints[%d]: duplicate address %s", set.GetName(), i, ce.Address)
		}
		seen[ce.Address] = true
		cb.Endpoints = append(cb.Endpoints, ce)
	}
	return cb, nil
}

// endpointAddr checks set's endpoint i and returns its address,
// unmapped.
func endpointAddr(set *snapshotv1.Endpoints, i int) (netip.Addr, error) {
	e := set.GetEndpoints()[i]
	addr, err := netip.ParseAddr(e.GetAddress())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("endpoints %q: endpoints[%d]: address: %w", set.GetName(), i, err)
	}
	if e.GetPort() == 0 || e.GetPort() > 65535 {
		return netip.Addr{}, fmt.Errorf("endpoints %q: endpoints[%d]: port: %d out of range 1-65535", set.GetName(), i, e.GetPort())
	}
	return addr.Unmap(), nil
}

func addModelRule(backends map[string]*Backend, r *snapshotv1.ModelRule) error {
	b, ok := backends[r.GetPool()]
	if !ok {
		return fmt.Errorf("pool: unknown backend %q", r.GetPool())
	}
	if !b.IsPool() {
		return fmt.Errorf("pool: backend %q is not an InferencePool", r.GetPool())
	}
	if r.GetModelName() == "" && r.GetObjective() == "" {
		return errors.New("modelName: neither a model name nor an objective")
	}
	mr := &ModelRule{Name: r.GetName(), ModelName: r.GetModelName(), Objective: r.GetObjective(), Priority: r.GetPriority()}
	for i, t := range r.GetTargets() {
		if t.GetName() == "" {
			return fmt.Errorf("targets[%d]: empty model name", i)
		}
		mr.Targets = append(mr.Targets, &TargetModel{Name: t.GetName(), Weight: t.GetWeight()})
		mr.TotalWeight += uint64(t.GetWeight())
	}
	if mr.ModelName != "" {
		if b.Models == nil {
			b.Models = map[string]*ModelRule{}
		}
		if other, dup := b.Models[mr.ModelName]; dup {
			return fmt.Errorf("modelName: %q already claimed on pool %q by %q", mr.ModelName, b.Name, other.Name)
		}
		b.Models[mr.ModelName] = mr
	}
	if mr.Objective != "" {
		if b.Objectives == nil {
			b.Objectives = map[string]*ModelRule{}
		}
		if other, dup := b.Objectives[mr.Objective]; dup {
			return fmt.Errorf("objective: %q already claimed on pool %q by %q", mr.Objective, b.Name, other.Name)
		}
		b.Objectives[mr.Objective] = mr
	}
	return nil
}
