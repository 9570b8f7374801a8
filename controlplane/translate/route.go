package translate

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// routeRefs is what a route references, resolved once per translation (it
// does not depend on the gateway).
type routeRefs struct {
	// bad is the first unresolvable reference, nil when all resolve.
	bad *resolvedRef
	// pools are the identities of the inference pools the route references.
	pools []string
	// unsupported names the first filter or match value we cannot apply
	// ("" when none); such a route is not accepted, because a proxy rejects
	// a snapshot holding it as a whole.
	unsupported string
	// reads are the namespaces resolving the references looked into.
	reads map[string]bool
}

func (rr *routeRefs) resolvedCondition(gen int64) metav1.Condition {
	if rr.bad != nil {
		return cond(string(gwv1.RouteConditionResolvedRefs), false, rr.bad.reason, rr.bad.message, gen)
	}
	return cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", gen)
}

func (t *translator) routeRefs(r *gwv1.HTTPRoute) *routeRefs {
	if rr, ok := t.refs[r]; ok {
		return rr
	}
	rr := &routeRefs{reads: map[string]bool{}}
	// Resolving reads other namespaces (Services, pools, grants): record
	// them with the route, so every gateway attaching it depends on them
	// (the result is shared by those gateways).
	saved := t.reading
	t.reading = rr.reads
	defer func() { t.reading = saved }()
	seen := map[string]bool{}
	visit := func(ref gwv1.BackendObjectReference) {
		res := t.resolveRef(r.Namespace, ref)
		if res.reason != "" {
			if rr.bad == nil {
				rr.bad = &res
			}
			return
		}
		if id := res.poolID(); id != "" && !seen[id] {
			seen[id] = true
			rr.pools = append(rr.pools, id)
		}
	}
	visitFilters := func(fs []gwv1.HTTPRouteFilter) {
		for _, f := range fs {
			switch f.Type {
			case gwv1.HTTPRouteFilterRequestHeaderModifier, gwv1.HTTPRouteFilterResponseHeaderModifier,
				gwv1.HTTPRouteFilterRequestRedirect, gwv1.HTTPRouteFilterURLRewrite, gwv1.HTTPRouteFilterCORS:
			case gwv1.HTTPRouteFilterRequestMirror:
				if f.RequestMirror != nil {
					visit(f.RequestMirror.BackendRef)
				}
			default:
				if rr.unsupported == "" {
					rr.unsupported = fmt.Sprintf("filter type %q is not supported", f.Type)
				}
			}
		}
	}
	for i, rule := range r.Spec.Rules {
		if rr.unsupported == "" {
			if err := checkMatches(rule.Matches); err != nil {
				rr.unsupported = fmt.Sprintf("rule %d: %v", i, err)
			} else if err := checkRuleFilters(&rule); err != nil {
				rr.unsupported = fmt.Sprintf("rule %d: %v", i, err)
			}
		}
		visitFilters(rule.Filters)
		for _, br := range rule.BackendRefs {
			visit(br.BackendObjectReference)
			visitFilters(br.Filters)
		}
	}
	t.refs[r] = rr
	return rr
}

// buildRoute translates rule i of r into a Route resource of this gateway.
func (t *translator) buildRoute(gs *gatewayState, r *gwv1.HTTPRoute, i int, listeners, hosts []string) *snapshotv1.Route {
	rule := &r.Spec.Rules[i]
	rk := key(&r.ObjectMeta)
	out := &snapshotv1.Route{
		Name:      fmt.Sprintf("%s/%s/%d", gs.name, rk, i),
		Route:     rk,
		RuleIndex: uint32(i),
		Listeners: listeners,
		Hostnames: hosts,
	}
	if !r.CreationTimestamp.IsZero() {
		out.CreatedUnix = r.CreationTimestamp.Unix()
	}
	if rule.Name != nil {
		out.RuleName = string(*rule.Name)
	}
	for _, m := range rule.Matches {
		out.Matches = append(out.Matches, translateMatch(m))
	}
	out.Filters = t.translateFilters(gs, r.Namespace, rule.Filters)
	for _, br := range rule.BackendRefs {
		weight := uint32(1)
		if br.Weight != nil {
			weight = uint32(max(*br.Weight, 0))
		}
		ref := t.backendRef(gs, r.Namespace, br.BackendObjectReference)
		ref.Weight = weight
		ref.Filters = t.translateFilters(gs, r.Namespace, br.Filters)
		out.Backends = append(out.Backends, ref)
	}
	if to := rule.Timeouts; to != nil {
		out.Timeouts = &snapshotv1.Timeouts{RequestMs: durationMs(to.Request), BackendRequestMs: durationMs(to.BackendRequest)}
	}
	if rt := rule.Retry; rt != nil {
		// Gateway API counts retries; the snapshot counts attempts. An
		// unset count means one retry (implementation-specific default).
		// Attempts beyond snapshotv1.MaxRetryAttempts are capped, as the
		// proxies would cap them, so the snapshot shows what runs.
		attempts := uint32(2)
		if rt.Attempts != nil {
			attempts = uint32(min(max(*rt.Attempts, 0)+1, snapshotv1.MaxRetryAttempts))
		}
		retry := &snapshotv1.Retry{Attempts: attempts, BackoffMs: durationMs(rt.Backoff)}
		for _, c := range rt.Codes {
			// Only error statuses can be retried; the API server enforces
			// this range, a file source may not.
			if c >= 0 && snapshotv1.RetryableStatus(uint32(c)) {
				retry.Codes = append(retry.Codes, uint32(c))
			}
		}
		out.Retry = retry
	}
	return out
}

// checkMatches rejects match values the proxy cannot compile: regular
// expressions outside Go's RE2 syntax, paths not starting with "/", empty
// header or query names.
func checkMatches(ms []gwv1.HTTPRouteMatch) error {
	for j, m := range ms {
		if p := m.Path; p != nil && p.Value != nil {
			if p.Type != nil && *p.Type == gwv1.PathMatchRegularExpression {
				if _, err := regexp.Compile(*p.Value); err != nil {
					return fmt.Errorf("match %d: path: invalid regular expression: %v", j, err)
				}
			} else if !strings.HasPrefix(*p.Value, "/") {
				return fmt.Errorf("match %d: path %q must start with /", j, *p.Value)
			}
		}
		for _, h := range m.Headers {
			if h.Name == "" {
				return fmt.Errorf("match %d: header match without a name", j)
			}
			if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
				if _, err := regexp.Compile(h.Value); err != nil {
					return fmt.Errorf("match %d: header %s: invalid regular expression: %v", j, h.Name, err)
				}
			}
		}
		for _, q := range m.QueryParams {
			if q.Name == "" {
				return fmt.Errorf("match %d: query parameter match without a name", j)
			}
			if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
				if _, err := regexp.Compile(q.Value); err != nil {
					return fmt.Errorf("match %d: query parameter %s: invalid regular expression: %v", j, q.Name, err)
				}
			}
		}
	}
	return nil
}

// checkRuleFilters rejects filter values the proxy cannot apply: redirect
// statuses, schemes and ports outside the API's ranges, paths not starting
// with "/", ReplacePrefixMatch on a rule with non-PathPrefix matches (the
// spec allows it only with PathPrefix), and a redirect together with a
// rewrite in one rule.
func checkRuleFilters(rule *gwv1.HTTPRouteRule) error {
	prefixOnly := len(rule.Matches) == 0
	if !prefixOnly {
		prefixOnly = true
		for _, m := range rule.Matches {
			if m.Path != nil && m.Path.Type != nil && *m.Path.Type != gwv1.PathMatchPathPrefix {
				prefixOnly = false
			}
		}
	}
	check := func(fs []gwv1.HTTPRouteFilter, where string) error {
		redirect, rewrite, cors := false, false, false
		for _, f := range fs {
			switch {
			case f.Type == gwv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
				redirect = true
				rr := f.RequestRedirect
				if rr.StatusCode != nil {
					switch *rr.StatusCode {
					case 301, 302, 303, 307, 308:
					default:
						return fmt.Errorf("%srequestRedirect: statusCode %d is not a redirect status", where, *rr.StatusCode)
					}
				}
				if rr.Scheme != nil && *rr.Scheme != "http" && *rr.Scheme != "https" {
					return fmt.Errorf("%srequestRedirect: scheme %q is not http or https", where, *rr.Scheme)
				}
				if rr.Port != nil && (*rr.Port < 1 || *rr.Port > 65535) {
					return fmt.Errorf("%srequestRedirect: port %d out of range", where, *rr.Port)
				}
				if err := checkPathModifier(rr.Path, prefixOnly); err != nil {
					return fmt.Errorf("%srequestRedirect: %v", where, err)
				}
			case f.Type == gwv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
				rewrite = true
				if err := checkPathModifier(f.URLRewrite.Path, prefixOnly); err != nil {
					return fmt.Errorf("%surlRewrite: %v", where, err)
				}
			case f.Type == gwv1.HTTPRouteFilterCORS:
				if f.CORS == nil {
					return fmt.Errorf("%sfilter type CORS needs cors", where)
				}
				if cors {
					return fmt.Errorf("%sCORS filter cannot be repeated", where)
				}
				cors = true
				if err := checkCORS(f.CORS); err != nil {
					return fmt.Errorf("%scors: %v", where, err)
				}
			}
		}
		if redirect && rewrite {
			return fmt.Errorf("%srequestRedirect and urlRewrite cannot be used together", where)
		}
		return nil
	}
	if err := check(rule.Filters, ""); err != nil {
		return err
	}
	for i, br := range rule.BackendRefs {
		if err := check(br.Filters, fmt.Sprintf("backendRefs[%d]: ", i)); err != nil {
			return err
		}
	}
	return nil
}

func checkPathModifier(p *gwv1.HTTPPathModifier, prefixOnly bool) error {
	if p == nil {
		return nil
	}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath != nil && !strings.HasPrefix(*p.ReplaceFullPath, "/") {
			return fmt.Errorf("replaceFullPath %q must start with /", *p.ReplaceFullPath)
		}
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch != nil && *p.ReplacePrefixMatch != "" && !strings.HasPrefix(*p.ReplacePrefixMatch, "/") {
			return fmt.Errorf("replacePrefixMatch %q must start with /", *p.ReplacePrefixMatch)
		}
		if !prefixOnly {
			return errors.New("replacePrefixMatch needs every match of the rule to be a PathPrefix match")
		}
	}
	return nil
}

// durationMs parses a Gateway API duration (a subset of Go's syntax). The API
// server validates the format; an unparsable value from a file means "unset".
func durationMs(d *gwv1.Duration) uint64 {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		return 0
	}
	return uint64(v.Milliseconds())
}

func translateMatch(m gwv1.HTTPRouteMatch) *snapshotv1.RouteMatch {
	out := &snapshotv1.RouteMatch{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: "/"}}
	if p := m.Path; p != nil {
		if p.Type != nil {
			out.Path.Type = pathType(*p.Type)
		}
		if p.Value != nil {
			out.Path.Value = *p.Value
		}
	}
	for _, h := range m.Headers {
		typ := snapshotv1.MatchType_EXACT
		if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
			typ = snapshotv1.MatchType_REGULAR_EXPRESSION
		}
		out.Headers = append(out.Headers, &snapshotv1.HeaderMatch{Type: typ, Name: http.CanonicalHeaderKey(string(h.Name)), Value: h.Value})
	}
	for _, q := range m.QueryParams {
		typ := snapshotv1.MatchType_EXACT
		if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
			typ = snapshotv1.MatchType_REGULAR_EXPRESSION
		}
		out.QueryParams = append(out.QueryParams, &snapshotv1.QueryParamMatch{Type: typ, Name: string(q.Name), Value: q.Value})
	}
	if m.Method != nil {
		out.Method = string(*m.Method)
	}
	return out
}

func pathType(t gwv1.PathMatchType) snapshotv1.MatchType {
	switch t {
	case gwv1.PathMatchExact:
		return snapshotv1.MatchType_EXACT
	case gwv1.PathMatchRegularExpression:
		return snapshotv1.MatchType_REGULAR_EXPRESSION
	}
	return snapshotv1.MatchType_PATH_PREFIX
}

// translateFilters converts the supported filters; unsupported ones were
// already reported by routeRefs and keep the route from being served.
func (t *translator) translateFilters(gs *gatewayState, routeNS string, fs []gwv1.HTTPRouteFilter) []*snapshotv1.Filter {
	var out []*snapshotv1.Filter
	for _, f := range fs {
		switch {
		case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaderModifier)}})
		case f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)}})
		case f.Type == gwv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
			rr := f.RequestRedirect
			red := &snapshotv1.RequestRedirect{StatusCode: 302, Path: pathModifier(rr.Path)}
			if rr.Scheme != nil {
				red.Scheme = *rr.Scheme
			}
			if rr.Hostname != nil {
				red.Hostname = string(*rr.Hostname)
			}
			if rr.Port != nil {
				red.Port = uint32(*rr.Port)
			}
			if rr.StatusCode != nil {
				red.StatusCode = uint32(*rr.StatusCode)
			}
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_RequestRedirect{RequestRedirect: red}})
		case f.Type == gwv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
			rw := &snapshotv1.URLRewrite{Path: pathModifier(f.URLRewrite.Path)}
			if f.URLRewrite.Hostname != nil {
				rw.Hostname = string(*f.URLRewrite.Hostname)
			}
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_UrlRewrite{UrlRewrite: rw}})
		case f.Type == gwv1.HTTPRouteFilterCORS && f.CORS != nil:
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_Cors{Cors: corsFilter(f.CORS)}})
		case f.Type == gwv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil:
			m := f.RequestMirror
			pct := 100.0
			switch {
			case m.Percent != nil:
				pct = float64(*m.Percent)
			case m.Fraction != nil:
				den := int32(100)
				if m.Fraction.Denominator != nil && *m.Fraction.Denominator > 0 {
					den = *m.Fraction.Denominator
				}
				pct = 100 * float64(m.Fraction.Numerator) / float64(den)
			}
			out = append(out, &snapshotv1.Filter{Kind: &snapshotv1.Filter_RequestMirror{RequestMirror: &snapshotv1.RequestMirror{
				Backend: t.backendRef(gs, routeNS, m.BackendRef),
				Percent: min(max(pct, 0), 100),
			}}})
		}
	}
	return out
}

func headerModifier(h *gwv1.HTTPHeaderFilter) *snapshotv1.HeaderModifier {
	out := &snapshotv1.HeaderModifier{Remove: h.Remove}
	for _, s := range h.Set {
		out.Set = append(out.Set, &snapshotv1.Header{Name: string(s.Name), Value: s.Value})
	}
	for _, a := range h.Add {
		out.Add = append(out.Add, &snapshotv1.Header{Name: string(a.Name), Value: a.Value})
	}
	return out
}

func pathModifier(p *gwv1.HTTPPathModifier) *snapshotv1.PathModifier {
	if p == nil {
		return nil
	}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath != nil {
			return &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_FULL_PATH, Value: *p.ReplaceFullPath}
		}
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch != nil {
			return &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_PREFIX_MATCH, Value: *p.ReplacePrefixMatch}
		}
	}
	return nil
}
