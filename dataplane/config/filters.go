package config

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Filters are the HTTPRoute filters of a rule or of one backendRef, compiled
// into the order the proxy applies them: redirect (which ends the request),
// URL rewrite, request headers, mirrors; response headers on the way back.
type Filters struct {
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	Redirect        *Redirect       `json:"redirect,omitempty"`
	Rewrite         *Rewrite        `json:"rewrite,omitempty"`
	Mirrors         []*Mirror       `json:"mirrors,omitempty"`
	CORS            *CORS           `json:"cors,omitempty"`
}

// Empty reports whether no filter is set, so the request path can skip them
// with one check.
func (f *Filters) Empty() bool {
	return f.RequestHeaders == nil && f.ResponseHeaders == nil && f.Redirect == nil && f.Rewrite == nil && len(f.Mirrors) == 0 && f.CORS == nil
}

// Header is one header name (canonical MIME form) and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Apply modifies h in the Gateway API's order: set, add, remove.
func (m *HeaderModifier) Apply(h http.Header) {
	for _, s := range m.Set {
		h[s.Name] = []string{s.Value}
	}
	for _, a := range m.Add {
		h[a.Name] = append(h[a.Name], a.Value)
	}
	for _, r := range m.Remove {
		delete(h, r)
	}
}

// PathModifier replaces the full path or the matched prefix.
type PathModifier struct {
	// Prefix is true for ReplacePrefixMatch, false for ReplaceFullPath.
	Prefix bool   `json:"prefix,omitempty"`
	Value  string `json:"value"`
}

// Apply returns the new path for path, whose match was m.
func (p *PathModifier) Apply(path string, m *Match) string {
	if !p.Prefix {
		return p.Value
	}
	if m == nil || m.PathType != PathPrefix {
		// Only a PathPrefix match has a prefix to replace (the API
		// rejects other combinations); keep the path.
		return path
	}
	rest := path
	if m.Path != "/" {
		rest = path[min(len(m.Path), len(path)):]
	}
	// rest is "" or starts with "/" (prefix matches are element-wise).
	v := p.Value
	if rest == "/" {
		// Keep a trailing slash the client sent.
		return strings.TrimSuffix(v, "/") + "/"
	}
	rest = strings.TrimPrefix(rest, "/")
	switch {
	case rest == "":
		if v == "" {
			return "/"
		}
		return v
	case v == "" || v == "/":
		return "/" + rest
	case strings.HasSuffix(v, "/"):
		return v + rest
	default:
		return v + "/" + rest
	}
}

// Redirect answers the request with a redirect instead of proxying it.
type Redirect struct {
	Scheme   string        `json:"scheme,omitempty"`
	Hostname string        `json:"hostname,omitempty"`
	Port     uint32        `json:"port,omitempty"`
	Path     *PathModifier `json:"path,omitempty"`
	Status   int           `json:"status"`
}

// Rewrite changes the Host and path sent upstream.
type Rewrite struct {
	Hostname string        `json:"hostname,omitempty"`
	Path     *PathModifier `json:"path,omitempty"`
}

// Mirror sends a copy of a share of the requests to another backend; its
// responses are discarded.
type Mirror struct {
	Name    string   `json:"backend"`
	Backend *Backend `json:"-"`
	// Percent of requests mirrored, 0–100.
	Percent float64 `json:"percent"`
}

// Timeouts of a rule; zero means none.
type Timeouts struct {
	// Request bounds the whole exchange as the client sees it, retries
	// included, until the response headers.
	Request time.Duration `json:"request,omitempty"`
	// BackendRequest bounds one attempt.
	BackendRequest time.Duration `json:"backendRequest,omitempty"`
}

// Retry says when a failed attempt is repeated on another endpoint.
type Retry struct {
	// Attempts in total, the first included (≥ 2).
	Attempts int `json:"attempts"`
	// Codes are the retried upstream statuses (502, 503, 504 by default);
	// connection failures are always retried.
	Codes   []int         `json:"codes"`
	Backoff time.Duration `json:"backoff,omitempty"`
}

// Retries reports whether a response status is retried.
func (r *Retry) Retries(status int) bool {
	for _, c := range r.Codes {
		if c == status {
			return true
		}
	}
	return false
}

func compileFilters(fs []*snapshotv1.Filter, backends map[string]*Backend) (Filters, error) {
	var out Filters
	for i, f := range fs {
		switch k := f.GetKind().(type) {
		case *snapshotv1.Filter_RequestHeaderModifier:
			hm, err := compileHeaderModifier(k.RequestHeaderModifier)
			if err != nil {
				return out, fmt.Errorf("filters[%d]: requestHeaderModifier: %w", i, err)
			}
			out.RequestHeaders = hm
		case *snapshotv1.Filter_ResponseHeaderModifier:
			hm, err := compileHeaderModifier(k.ResponseHeaderModifier)
			if err != nil {
				return out, fmt.Errorf("filters[%d]: responseHeaderModifier: %w", i, err)
			}
			out.ResponseHeaders = hm
		case *snapshotv1.Filter_RequestRedirect:
			rr := k.RequestRedirect
			red := &Redirect{Scheme: strings.ToLower(rr.GetScheme()), Hostname: strings.ToLower(rr.GetHostname()), Port: rr.GetPort(), Status: int(rr.GetStatusCode())}
			if red.Status == 0 {
				red.Status = http.StatusFound
			}
			switch red.Status {
			case 301, 302, 303, 307, 308:
			default:
				return out, fmt.Errorf("filters[%d]: requestRedirect: statusCode: %d is not a redirect status", i, red.Status)
			}
			switch red.Scheme {
			case "", "http", "https":
			default:
				return out, fmt.Errorf("filters[%d]: requestRedirect: scheme: unsupported %q", i, red.Scheme)
			}
			if red.Port > 65535 {
				return out, fmt.Errorf("filters[%d]: requestRedirect: port: %d out of range", i, red.Port)
			}
			pm, err := compilePath(rr.GetPath())
			if err != nil {
				return out, fmt.Errorf("filters[%d]: requestRedirect: %w", i, err)
			}
			red.Path = pm
			out.Redirect = red
		case *snapshotv1.Filter_UrlRewrite:
			pm, err := compilePath(k.UrlRewrite.GetPath())
			if err != nil {
				return out, fmt.Errorf("filters[%d]: urlRewrite: %w", i, err)
			}
			out.Rewrite = &Rewrite{Hostname: k.UrlRewrite.GetHostname(), Path: pm}
		case *snapshotv1.Filter_Cors:
			c, err := compileCORS(k.Cors)
			if err != nil {
				return out, fmt.Errorf("filters[%d]: cors: %w", i, err)
			}
			out.CORS = c
		case *snapshotv1.Filter_RequestMirror:
			name := k.RequestMirror.GetBackend().GetBackend()
			if name == "" {
				// An unresolved mirror target is reported on the route by
				// the control plane; the main request is unaffected.
				continue
			}
			b := backends[name]
			if b == nil {
				return out, fmt.Errorf("filters[%d]: requestMirror: unknown backend %q", i, name)
			}
			pct := k.RequestMirror.GetPercent()
			if pct < 0 || pct > 100 || pct != pct {
				return out, fmt.Errorf("filters[%d]: requestMirror: percent: %v out of range 0-100", i, pct)
			}
			out.Mirrors = append(out.Mirrors, &Mirror{Name: name, Backend: b, Percent: pct})
		default:
			return out, fmt.Errorf("filters[%d]: unsupported filter %T", i, k)
		}
	}
	return out, nil
}

func compileHeaderModifier(h *snapshotv1.HeaderModifier) (*HeaderModifier, error) {
	out := &HeaderModifier{}
	for _, s := range h.GetSet() {
		if s.GetName() == "" {
			return nil, fmt.Errorf("set: empty header name")
		}
		out.Set = append(out.Set, Header{Name: http.CanonicalHeaderKey(s.GetName()), Value: s.GetValue()})
	}
	for _, a := range h.GetAdd() {
		if a.GetName() == "" {
			return nil, fmt.Errorf("add: empty header name")
		}
		out.Add = append(out.Add, Header{Name: http.CanonicalHeaderKey(a.GetName()), Value: a.GetValue()})
	}
	for _, r := range h.GetRemove() {
		if r == "" {
			return nil, fmt.Errorf("remove: empty header name")
		}
		out.Remove = append(out.Remove, http.CanonicalHeaderKey(r))
	}
	return out, nil
}

func compilePath(p *snapshotv1.PathModifier) (*PathModifier, error) {
	if p == nil {
		return nil, nil
	}
	switch p.GetType() {
	case snapshotv1.PathModifier_REPLACE_FULL_PATH:
		if !strings.HasPrefix(p.GetValue(), "/") {
			return nil, fmt.Errorf("path: replaceFullPath %q must start with /", p.GetValue())
		}
		return &PathModifier{Value: p.GetValue()}, nil
	case snapshotv1.PathModifier_REPLACE_PREFIX_MATCH:
		if p.GetValue() != "" && !strings.HasPrefix(p.GetValue(), "/") {
			return nil, fmt.Errorf("path: replacePrefixMatch %q must start with /", p.GetValue())
		}
		return &PathModifier{Prefix: true, Value: p.GetValue()}, nil
	}
	return nil, fmt.Errorf("path: unsupported modifier type %v", p.GetType())
}

func compileTimeouts(t *snapshotv1.Timeouts) Timeouts {
	return Timeouts{
		Request:        time.Duration(t.GetRequestMs()) * time.Millisecond,
		BackendRequest: time.Duration(t.GetBackendRequestMs()) * time.Millisecond,
	}
}

func compileRetry(r *snapshotv1.Retry) (*Retry, error) {
	if r == nil || r.GetAttempts() < 2 {
		return nil, nil
	}
	out := &Retry{Attempts: int(min(r.GetAttempts(), snapshotv1.MaxRetryAttempts)), Backoff: time.Duration(r.GetBackoffMs()) * time.Millisecond}
	codes := r.GetCodes()
	if len(codes) == 0 {
		codes = snapshotv1.DefaultRetryCodes()
	}
	for i, c := range codes {
		if !snapshotv1.RetryableStatus(c) {
			return nil, fmt.Errorf("retry: codes[%d]: %d is not an error status", i, c)
		}
		out.Codes = append(out.Codes, int(c))
	}
	return out, nil
}
