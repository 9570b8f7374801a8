package config

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// CORS is a compiled HTTPRoute CORS filter. The proxy answers a preflight
// request of a route with CORS itself and adds the Access-Control-* headers
// to the responses of allowed origins.
type CORS struct {
	// AnyOrigin is set for allowOrigins ["*"]; otherwise Origins lists the
	// allowed ones.
	AnyOrigin bool            `json:"anyOrigin,omitempty"`
	Origins   []OriginPattern `json:"origins,omitempty"`
	// Credentials sends Access-Control-Allow-Credentials: true.
	Credentials bool `json:"credentials,omitempty"`
	// Methods, Headers and Expose are the header values to send ("" means
	// the header is left out); AnyMethod and AnyHeader echo what the
	// preflight asks for instead.
	Methods   string `json:"methods,omitempty"`
	AnyMethod bool   `json:"anyMethod,omitempty"`
	Headers   string `json:"headers,omitempty"`
	AnyHeader bool   `json:"anyHeader,omitempty"`
	Expose    string `json:"expose,omitempty"`
	// MaxAge is the Access-Control-Max-Age value of preflight answers.
	MaxAge string `json:"maxAge"`
}

// OriginPattern is one allowed origin: scheme, host and port must all
// match. A host starting with "." is a wildcard ("*.example.com" keeps
// ".example.com") matching any number of labels in front of it; "" matches
// every host.
type OriginPattern struct {
	Scheme string `json:"scheme"`
	Host   string `json:"host"`
	Port   string `json:"port"`
}

// Allows reports whether a request's Origin header value is allowed.
func (c *CORS) Allows(origin string) bool {
	if c.AnyOrigin {
		return origin != ""
	}
	o, err := parseOrigin(origin, false)
	if err != nil {
		return false
	}
	for _, p := range c.Origins {
		if p.Scheme != o.Scheme || p.Port != o.Port {
			continue
		}
		switch {
		case p.Host == "":
			return true
		case p.Host[0] == '.':
			if len(o.Host) > len(p.Host) && strings.HasSuffix(o.Host, p.Host) {
				return true
			}
		case p.Host == o.Host:
			return true
		}
	}
	return false
}

// parseOrigin splits "<scheme>://<host>[:<port>]" into its parts, the
// scheme and host lowercased and the port made explicit (80 for http, 443
// for https) so that "https://a.com" and "https://a.com:443" are the same
// origin. With wildcard, a host of "*" or starting with "*." is allowed.
func parseOrigin(s string, wildcard bool) (OriginPattern, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return OriginPattern{}, errors.New("no scheme")
	}
	o := OriginPattern{Scheme: strings.ToLower(scheme)}
	switch o.Scheme {
	case "http":
		o.Port = "80"
	case "https":
		o.Port = "443"
	default:
		return o, fmt.Errorf("scheme %q is not http or https", scheme)
	}
	host := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host = rest[:i]
		p, err := strconv.ParseUint(rest[i+1:], 10, 16)
		if err != nil || p == 0 {
			return o, fmt.Errorf("port %q out of range 1-65535", rest[i+1:])
		}
		o.Port = strconv.FormatUint(p, 10)
	}
	host = strings.ToLower(host)
	if host == "" || strings.ContainsAny(host, "/?#@") {
		return o, fmt.Errorf("host %q is not a host name", host)
	}
	switch {
	case wildcard && host == "*":
		host = ""
	case wildcard && strings.HasPrefix(host, "*."):
		host = host[1:]
	}
	if strings.Contains(host, "*") {
		return o, fmt.Errorf("host %q has a wildcard that is not its first label", host)
	}
	o.Host = host
	return o, nil
}

func compileCORS(c *snapshotv1.CORS) (*CORS, error) {
	out := &CORS{Credentials: c.GetAllowCredentials(), MaxAge: "5"}
	if s := c.GetMaxAgeSeconds(); s > 0 {
		out.MaxAge = strconv.FormatUint(uint64(s), 10)
	}
	for i, o := range c.GetAllowOrigins() {
		if o == "*" {
			out.AnyOrigin = true
			continue
		}
		p, err := parseOrigin(o, true)
		if err != nil {
			return nil, fmt.Errorf("allowOrigins[%d]: %q: %w", i, o, err)
		}
		out.Origins = append(out.Origins, p)
	}
	var err error
	if out.Methods, out.AnyMethod, err = corsList("allowMethods", c.GetAllowMethods(), false); err != nil {
		return nil, err
	}
	if out.Headers, out.AnyHeader, err = corsList("allowHeaders", c.GetAllowHeaders(), true); err != nil {
		return nil, err
	}
	if out.AnyOrigin && len(out.Origins) > 0 {
		return nil, errors.New(`allowOrigins: "*" cannot be listed alongside other origins`)
	}
	expose := c.GetExposeHeaders()
	if out.Credentials && len(expose) == 1 && expose[0] == "*" {
		// With credentials "*" is a header name, not a wildcard, to the
		// browser (Fetch standard): leave the header out instead.
		expose = nil
	}
	for i, h := range expose {
		if h == "" {
			return nil, fmt.Errorf("exposeHeaders[%d]: empty header name", i)
		}
	}
	out.Expose = strings.Join(expose, ", ")
	return out, nil
}

// corsList joins a list of methods or headers into a header value, or
// reports the wildcard; names are case-sensitive methods or (lowercased)
// header names.
func corsList(field string, vs []string, lower bool) (string, bool, error) {
	if len(vs) == 1 && vs[0] == "*" {
		return "", true, nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		if v == "" || v == "*" {
			return "", false, fmt.Errorf("%s[%d]: %q is not a name (\"*\" must be alone)", field, i, v)
		}
		if lower {
			v = strings.ToLower(v)
		}
		out[i] = v
	}
	return strings.Join(out, ", "), false, nil
}

// Preflight writes the Access-Control-* headers answering a preflight from
// an allowed origin; method and headers are the request's
// Access-Control-Request-Method and -Headers values.
func (c *CORS) Preflight(h http.Header, origin, method, headers string) {
	c.Actual(h, origin)
	switch {
	case c.AnyMethod && method != "":
		// Echoing is right with and without credentials; "*" is not with.
		h["Access-Control-Allow-Methods"] = []string{method}
	case c.Methods != "":
		h["Access-Control-Allow-Methods"] = []string{c.Methods}
	}
	switch {
	case c.AnyHeader && headers != "":
		h["Access-Control-Allow-Headers"] = []string{headers}
	case c.Headers != "":
		h["Access-Control-Allow-Headers"] = []string{c.Headers}
	}
	h["Access-Control-Max-Age"] = []string{c.MaxAge}
}

// Actual writes the headers a response to an allowed origin carries. The
// origin is echoed (the spec's choice with credentials, allowed without),
// so caches must key on it: Vary: Origin.
func (c *CORS) Actual(h http.Header, origin string) {
	h["Access-Control-Allow-Origin"] = []string{origin}
	if c.Credentials {
		h["Access-Control-Allow-Credentials"] = []string{"true"}
	}
	if c.Expose != "" {
		h["Access-Control-Expose-Headers"] = []string{c.Expose}
	}
	for _, v := range h["Vary"] {
		if v == "Origin" {
			return
		}
	}
	h["Vary"] = append(h["Vary"], "Origin")
}
