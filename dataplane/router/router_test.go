package router_test

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"testing"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/router"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const gw = "ns/gw"

func listener(section, host string) *snapshotv1.Listener {
	return &snapshotv1.Listener{Name: gw + "/" + section, Port: 80, Protocol: snapshotv1.Listener_HTTP, Hostname: host}
}

type rule struct {
	name      string // route name; the rule's resource name is derived
	created   int64
	listeners []string
	hosts     []string
	matches   []*snapshotv1.RouteMatch
}

func prefix(p string) *snapshotv1.RouteMatch {
	return &snapshotv1.RouteMatch{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: p}}
}

func exact(p string) *snapshotv1.RouteMatch {
	return &snapshotv1.RouteMatch{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_EXACT, Value: p}}
}

func regex(p string) *snapshotv1.RouteMatch {
	return &snapshotv1.RouteMatch{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_REGULAR_EXPRESSION, Value: p}}
}

func build(t testing.TB, ls []*snapshotv1.Listener, rules []rule) *router.Router {
	t.Helper()
	var rs []snapshotv1.Named
	for _, l := range ls {
		rs = append(rs, l)
	}
	for _, r := range rules {
		lns := r.listeners
		if lns == nil {
			lns = []string{ls[0].Name}
		}
		rs = append(rs, &snapshotv1.Route{Name: gw + "/" + r.name + "/0", Route: r.name, Listeners: lns,
			Hostnames: r.hosts, Matches: r.matches, CreatedUnix: r.created})
	}
	c, err := config.Compile(configtest.Resources(gw, rs...))
	if err != nil {
		t.Fatal(err)
	}
	return router.New(c.Ports[0])
}

func match(rt *router.Router, method, target string, hdr ...string) string {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, _ := rt.Match(req)
	if r == nil {
		return ""
	}
	return r.Route
}

func TestPathPrecedence(t *testing.T) {
	hdr := prefix("/v1")
	hdr.Headers = []*snapshotv1.HeaderMatch{{Name: "x-a", Value: "1"}}
	two := prefix("/v1")
	two.Headers = []*snapshotv1.HeaderMatch{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2", Type: snapshotv1.MatchType_REGULAR_EXPRESSION}}
	post := prefix("/v1")
	post.Method = "post"
	rt := build(t, []*snapshotv1.Listener{listener("http", "")}, []rule{
		{name: "ns/root", matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/v1", matches: []*snapshotv1.RouteMatch{prefix("/v1")}},
		{name: "ns/v1chat", matches: []*snapshotv1.RouteMatch{prefix("/v1/chat/")}},
		{name: "ns/exact", matches: []*snapshotv1.RouteMatch{exact("/v1/chat/completions")}},
		{name: "ns/regex", matches: []*snapshotv1.RouteMatch{regex("/v1/chat/.*")}},
		{name: "ns/regex2", matches: []*snapshotv1.RouteMatch{regex("/x/[0-9]+")}},
		{name: "ns/hdr", matches: []*snapshotv1.RouteMatch{hdr}},
		{name: "ns/two", matches: []*snapshotv1.RouteMatch{two}},
		{name: "ns/post", matches: []*snapshotv1.RouteMatch{post}},
	})
	for _, tc := range []struct {
		method, target string
		hdr            []string
		want           string
	}{
		{"GET", "/v1/chat/completions", nil, "ns/exact"},
		{"GET", "/v1/chat/completions/x", nil, "ns/v1chat"},
		{"GET", "/v1/chat", nil, "ns/v1chat"}, // prefix matches the element itself
		{"GET", "/v1/chatty", nil, "ns/v1"},   // but not a longer element
		{"GET", "/v1/models", nil, "ns/v1"},
		{"GET", "/x/12", nil, "ns/root"}, // prefix "/" is still a prefix: beats regex
		{"GET", "/v1/models", []string{"x-a", "1"}, "ns/hdr"},
		{"GET", "/v1/models", []string{"x-a", "1", "x-b", "2"}, "ns/two"},
		{"GET", "/v1/models", []string{"x-a", "1", "x-b", "22"}, "ns/hdr"},  // regex is anchored
		{"POST", "/v1/models", []string{"x-a", "1", "x-b", "2"}, "ns/post"}, // method beats headers
		{"GET", "/other", nil, "ns/root"},
	} {
		if got := match(rt, tc.method, tc.target, tc.hdr...); got != tc.want {
			t.Errorf("%s %s %v: got %q, want %q", tc.method, tc.target, tc.hdr, got, tc.want)
		}
	}
	// Regex serves paths no prefix claims.
	rt = build(t, []*snapshotv1.Listener{listener("http", "")}, []rule{
		{name: "ns/v1", matches: []*snapshotv1.RouteMatch{prefix("/v1")}},
		{name: "ns/regex2", matches: []*snapshotv1.RouteMatch{regex("/x/[0-9]+")}},
	})
	if got := match(rt, "GET", "/x/12"); got != "ns/regex2" {
		t.Errorf("regex: got %q", got)
	}
	if got := match(rt, "GET", "/x/1a"); got != "" {
		t.Errorf("no match: got %q", got)
	}
}

func TestTieBreaks(t *testing.T) {
	rt := build(t, []*snapshotv1.Listener{listener("http", "")}, []rule{
		{name: "ns/b-young", created: 200, matches: []*snapshotv1.RouteMatch{prefix("/a")}},
		{name: "ns/c-old", created: 100, matches: []*snapshotv1.RouteMatch{prefix("/a")}},
		{name: "ns/b-same", created: 300, matches: []*snapshotv1.RouteMatch{prefix("/b")}},
		{name: "ns/a-same", created: 300, matches: []*snapshotv1.RouteMatch{prefix("/b")}},
	})
	if got := match(rt, "GET", "/a"); got != "ns/c-old" {
		t.Errorf("oldest route must win: got %q", got)
	}
	if got := match(rt, "GET", "/b"); got != "ns/a-same" {
		t.Errorf("alphabetical route must win: got %q", got)
	}
}

func TestHostnames(t *testing.T) {
	ls := []*snapshotv1.Listener{listener("any", ""), listener("wild", "*.example.com"), listener("exact", "api.example.com"), listener("deep", "*.b.example.com")}
	rt := build(t, ls, []rule{
		{name: "ns/any", listeners: []string{gw + "/any"}, matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/wild", listeners: []string{gw + "/wild"}, matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/deep", listeners: []string{gw + "/deep"}, matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/exact", listeners: []string{gw + "/exact"}, matches: []*snapshotv1.RouteMatch{prefix("/only")}},
		// Route-level hostnames inside the catch-all listener.
		{name: "ns/foo-exact", listeners: []string{gw + "/any"}, hosts: []string{"foo.test"}, matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/foo-wild", listeners: []string{gw + "/any"}, hosts: []string{"*.test"}, matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/foo-wild-path", listeners: []string{gw + "/any"}, hosts: []string{"*.test"}, matches: []*snapshotv1.RouteMatch{prefix("/w")}},
	})
	for _, tc := range []struct{ host, path, want string }{
		{"api.example.com", "/only", "ns/exact"},
		{"API.Example.com:8080", "/only/x", "ns/exact"},
		{"api.example.com", "/other", ""}, // listener isolation: no fallback to *.example.com
		{"x.example.com", "/", "ns/wild"},
		{"x.b.example.com", "/", "ns/deep"}, // longest wildcard listener
		{"example.com", "/", "ns/any"},      // wildcard needs a label in front
		{"foo.test", "/", "ns/foo-exact"},
		{"bar.test", "/", "ns/foo-wild"},
		{"foo.test", "/w", "ns/foo-exact"}, // most specific hostname wins before path
		{"bar.test", "/w/1", "ns/foo-wild-path"},
		{"other", "/", "ns/any"},
	} {
		if got := match(rt, "GET", "http://"+tc.host+tc.path); got != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	// A rule under a specific hostname that does not match the path leaves
	// the request to less specific hostnames.
	rt = build(t, ls[:1], []rule{
		{name: "ns/foo", hosts: []string{"foo.test"}, matches: []*snapshotv1.RouteMatch{prefix("/a")}},
		{name: "ns/all", matches: []*snapshotv1.RouteMatch{prefix("/b")}},
	})
	if got := match(rt, "GET", "http://foo.test/b"); got != "ns/all" {
		t.Errorf("fallback to less specific hostname: got %q", got)
	}
}

func TestQueryParams(t *testing.T) {
	q := prefix("/")
	q.QueryParams = []*snapshotv1.QueryParamMatch{{Name: "v", Value: "2"}}
	rt := build(t, []*snapshotv1.Listener{listener("http", "")}, []rule{
		{name: "ns/plain", matches: []*snapshotv1.RouteMatch{prefix("/")}},
		{name: "ns/q", matches: []*snapshotv1.RouteMatch{q}},
	})
	if got := match(rt, "GET", "/?v=2"); got != "ns/q" {
		t.Errorf("query: got %q", got)
	}
	if got := match(rt, "GET", "/?v=3"); got != "ns/plain" {
		t.Errorf("query mismatch: got %q", got)
	}
}

// TestWeightedSplit checks the weighted choice with a fixed seed, so the
// counts are deterministic and the tolerance cannot flake.
func TestWeightedSplit(t *testing.T) {
	r := &config.Route{Backends: []*config.BackendRef{{Name: "a", Weight: 80}, {Name: "b", Weight: 15}, {Name: "c", Weight: 5}, {Name: "zero", Weight: 0}}, TotalWeight: 100}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 100000
	for range n {
		counts[r.PickBackend(rng.Uint64N(r.TotalWeight)).Name]++
	}
	for name, w := range map[string]float64{"a": 0.80, "b": 0.15, "c": 0.05, "zero": 0} {
		got := float64(counts[name]) / n
		if got < w-0.01 || got > w+0.01 {
			t.Errorf("%s: share %.3f, want %.2f±0.01", name, got, w)
		}
	}
}

func TestHost(t *testing.T) {
	for in, want := range map[string]string{"a.b": "a.b", "A.B:80": "a.b", "[::1]:80": "::1", "[::1]": "::1", "x.": "x"} {
		if got := router.Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	var rules []rule
	for i := range 1000 {
		m := prefix(fmt.Sprintf("/svc-%d/v1", i))
		if i%10 == 0 {
			m.Headers = []*snapshotv1.HeaderMatch{{Name: "x-gateway-model-name", Value: fmt.Sprintf("model-%d", i)}}
		}
		rules = append(rules, rule{name: fmt.Sprintf("ns/r-%04d", i), hosts: []string{fmt.Sprintf("h%d.example.com", i%20)}, matches: []*snapshotv1.RouteMatch{m, exact(fmt.Sprintf("/exact-%d", i))}})
	}
	rules = append(rules, rule{name: "ns/catchall", matches: []*snapshotv1.RouteMatch{prefix("/")}})
	rt := build(b, []*snapshotv1.Listener{listener("http", "")}, rules)
	req := httptest.NewRequest("POST", "http://h19.example.com/svc-999/v1/chat/completions", nil)
	req.Header.Set("X-Gateway-Model-Name", "model-990")
	if r, _ := rt.Match(req); r == nil || r.Route != "ns/r-0999" {
		b.Fatalf("matched %v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		rt.Match(req)
	}
}

func TestServesHost(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		host  string
		want  bool
	}{
		{nil, "any.test", true},
		{[]string{"a.test"}, "a.test", true},
		{[]string{"a.test"}, "b.test", false},
		{[]string{"b.test", "*.example.com"}, "x.example.com", true},
		{[]string{"*.example.com"}, "example.com", false},
	} {
		if got := router.ServesHost(&config.Route{Hostnames: tc.hosts}, tc.host); got != tc.want {
			t.Errorf("%v serves %q: %v, want %v", tc.hosts, tc.host, got, tc.want)
		}
	}
}
