// Package router matches requests to HTTPRoute rules for one port, with the
// Gateway API's precedence: the most specific listener hostname first
// (listener isolation), then the most specific route hostname (exact beats
// wildcard, longer wildcard beats shorter, then routes without hostnames),
// then within a hostname Exact path > longest PathPrefix > regular
// expression, a method match, more header matches, more query matches, the
// oldest route, the route name, the rule index and the match index.
//
// A Router is immutable and built once per compiled config; Match does not
// allocate unless a rule has query parameter matches.
package router

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/infergate/infergate/dataplane/config"
)

// Router matches requests arriving on one port.
type Router struct {
	exact    map[string]*listener
	wildcard []*listener // longest suffix first
	any      *listener
}

type listener struct {
	cfg      *config.Listener
	exact    map[string]*table
	wildcard []*wildTable // longest suffix first
	any      *table
}

type wildTable struct {
	suffix string // ".example.com"
	*table
}

// table holds the rules of one hostname in precedence order. Exact paths are
// indexed by path: an Exact match beats every other kind, so they are tried
// first, and only rules with that very path can match.
type table struct {
	exactPaths map[string][]entry
	rest       []entry
}

type entry struct {
	route *config.Route
	match *config.Match
}

// New builds the router for one port of a compiled config.
func New(p *config.Port) *Router {
	r := &Router{exact: map[string]*listener{}}
	for _, l := range p.Listeners {
		ln := newListener(l)
		switch {
		case l.Hostname == "":
			r.any = ln
		case strings.HasPrefix(l.Hostname, "*."):
			r.wildcard = append(r.wildcard, ln)
		default:
			r.exact[l.Hostname] = ln
		}
	}
	slices.SortStableFunc(r.wildcard, func(a, b *listener) int { return len(b.cfg.Hostname) - len(a.cfg.Hostname) })
	return r
}

func newListener(l *config.Listener) *listener {
	ln := &listener{cfg: l, exact: map[string]*table{}}
	byHost := map[string][]entry{}
	var anyHost []entry
	for _, rt := range l.Routes {
		for _, m := range rt.Matches {
			e := entry{route: rt, match: m}
			if len(rt.Hostnames) == 0 {
				anyHost = append(anyHost, e)
				continue
			}
			for _, h := range rt.Hostnames {
				byHost[h] = append(byHost[h], e)
			}
		}
	}
	for h, es := range byHost {
		t := newTable(es)
		if strings.HasPrefix(h, "*.") {
			ln.wildcard = append(ln.wildcard, &wildTable{suffix: h[1:], table: t})
		} else {
			ln.exact[h] = t
		}
	}
	slices.SortFunc(ln.wildcard, func(a, b *wildTable) int {
		if c := len(b.suffix) - len(a.suffix); c != 0 {
			return c
		}
		return strings.Compare(a.suffix, b.suffix)
	})
	if len(anyHost) > 0 {
		ln.any = newTable(anyHost)
	}
	return ln
}

func newTable(es []entry) *table {
	slices.SortStableFunc(es, compareEntries)
	t := &table{exactPaths: map[string][]entry{}}
	for _, e := range es {
		if e.match.PathType == config.Exact {
			t.exactPaths[e.match.Path] = append(t.exactPaths[e.match.Path], e)
		} else {
			t.rest = append(t.rest, e)
		}
	}
	return t
}

// compareEntries orders entries by the Gateway API match precedence.
func compareEntries(a, b entry) int {
	am, bm := a.match, b.match
	if c := cmp.Compare(pathRank(am), pathRank(bm)); c != 0 {
		return c
	}
	if am.PathType == config.PathPrefix {
		if c := cmp.Compare(len(bm.Path), len(am.Path)); c != 0 {
			return c
		}
	}
	if c := boolCmp(am.Method != "", bm.Method != ""); c != 0 {
		return c
	}
	if c := cmp.Compare(len(bm.Headers), len(am.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(bm.Query), len(am.Query)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.route.CreatedUnix, b.route.CreatedUnix); c != 0 {
		return c
	}
	if c := strings.Compare(a.route.Route, b.route.Route); c != 0 {
		return c
	}
	if c := cmp.Compare(a.route.RuleIndex, b.route.RuleIndex); c != 0 {
		return c
	}
	return cmp.Compare(am.Index, bm.Index)
}

func boolCmp(a, b bool) int {
	if a == b {
		return 0
	}
	if a {
		return -1
	}
	return 1
}

func pathRank(m *config.Match) int {
	switch m.PathType {
	case config.Exact:
		return 0
	case config.PathPrefix:
		return 1
	default:
		return 2
	}
}

// Match returns the rule (and which of its matches) that serves req, or nil
// when no listener or rule accepts it.
func (r *Router) Match(req *http.Request) (*config.Route, *config.Match) {
	host := Host(req.Host)
	ln := r.exact[host]
	if ln == nil {
		for _, w := range r.wildcard {
			if wildcardMatch(w.cfg.Hostname[1:], host) {
				ln = w
				break
			}
		}
	}
	if ln == nil {
		ln = r.any
	}
	if ln == nil {
		return nil, nil
	}
	return ln.match(host, req)
}

// Listener returns the listener a request's host selects, or nil.
func (r *Router) Listener(host string) *config.Listener {
	host = Host(host)
	if ln := r.exact[host]; ln != nil {
		return ln.cfg
	}
	for _, w := range r.wildcard {
		if wildcardMatch(w.cfg.Hostname[1:], host) {
			return w.cfg
		}
	}
	if r.any != nil {
		return r.any.cfg
	}
	return nil
}

func (ln *listener) match(host string, req *http.Request) (*config.Route, *config.Match) {
	// A request whose most specific hostname has no matching rule may still
	// be served by a less specific one: route hostnames filter which rules
	// apply, they do not partition the path space.
	q := lazyQuery{raw: req.URL.RawQuery}
	if t := ln.exact[host]; t != nil {
		if e, ok := t.match(req, &q); ok {
			return e.route, e.match
		}
	}
	for _, w := range ln.wildcard {
		if wildcardMatch(w.suffix, host) {
			if e, ok := w.match(req, &q); ok {
				return e.route, e.match
			}
		}
	}
	if ln.any != nil {
		if e, ok := ln.any.match(req, &q); ok {
			return e.route, e.match
		}
	}
	return nil, nil
}

func (t *table) match(req *http.Request, q *lazyQuery) (entry, bool) {
	path := req.URL.Path
	if path == "" {
		path = "/"
	}
	for _, e := range t.exactPaths[path] {
		if matchRest(e.match, req, q) {
			return e, true
		}
	}
	for _, e := range t.rest {
		m := e.match
		if m.PathType == config.PathPrefix {
			if !prefixMatch(m.Path, path) {
				continue
			}
		} else if !m.PathRegex.MatchString(path) {
			continue
		}
		if matchRest(m, req, q) {
			return e, true
		}
	}
	return entry{}, false
}

func matchRest(m *config.Match, req *http.Request, q *lazyQuery) bool {
	if m.Method != "" && m.Method != req.Method {
		return false
	}
	for _, h := range m.Headers {
		vs := req.Header[h.Name]
		if len(vs) == 0 {
			return false
		}
		if h.Regex != nil {
			if !h.Regex.MatchString(vs[0]) {
				return false
			}
		} else if vs[0] != h.Value {
			return false
		}
	}
	if len(m.Query) > 0 {
		vals := q.values()
		for _, qm := range m.Query {
			vs := vals[qm.Name]
			if len(vs) == 0 {
				return false
			}
			if qm.Regex != nil {
				if !qm.Regex.MatchString(vs[0]) {
					return false
				}
			} else if vs[0] != qm.Value {
				return false
			}
		}
	}
	return true
}

// lazyQuery parses the query string only if some rule needs it.
type lazyQuery struct {
	raw    string
	parsed url.Values
}

func (q *lazyQuery) values() url.Values {
	if q.parsed == nil {
		q.parsed, _ = url.ParseQuery(q.raw)
		if q.parsed == nil {
			q.parsed = url.Values{}
		}
	}
	return q.parsed
}

// prefixMatch is Gateway API PathPrefix: element-wise, so "/foo" matches
// "/foo" and "/foo/bar" but not "/foobar". prefix has no trailing slash
// unless it is "/".
func prefixMatch(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// wildcardMatch matches suffix ".example.com" against a host with at least
// one more label in front.
func wildcardMatch(suffix, host string) bool {
	return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
}

// Host returns the lower-case host of a Host header, without port. It
// allocates only when the host has upper-case letters.
func Host(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// ServesHost reports whether rt takes requests for host (as Host returns
// it): rt has no hostnames, or one equal to host, or a wildcard matching it.
func ServesHost(rt *config.Route, host string) bool {
	if len(rt.Hostnames) == 0 {
		return true
	}
	for _, h := range rt.Hostnames {
		if h == host || strings.HasPrefix(h, "*.") && wildcardMatch(h[1:], host) {
			return true
		}
	}
	return false
}
