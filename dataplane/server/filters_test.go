package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"

	"github.com/infergate/infergate/dataplane/internal/testwait"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func hdrMod(set, add map[string]string, remove ...string) *snapshotv1.HeaderModifier {
	hm := &snapshotv1.HeaderModifier{Remove: remove}
	for k, v := range set {
		hm.Set = append(hm.Set, &snapshotv1.Header{Name: k, Value: v})
	}
	for k, v := range add {
		hm.Add = append(hm.Add, &snapshotv1.Header{Name: k, Value: v})
	}
	return hm
}

func TestHeaderModifiers(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "u")
		w.Header().Set("X-Drop", "d")
		fmt.Fprintf(w, "set=%s add=%v gone=%q", r.Header.Get("X-Set"), r.Header.Values("X-Add"), r.Header.Get("X-Gone"))
	}))
	t.Cleanup(be.Close)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	rt := route("r", "/", ref(svc, 1))
	rt.Filters = []*snapshotv1.Filter{
		{Kind: &snapshotv1.Filter_RequestHeaderModifier{RequestHeaderModifier: hdrMod(map[string]string{"x-set": "rule"}, map[string]string{"x-add": "rule"}, "x-gone")}},
		{Kind: &snapshotv1.Filter_ResponseHeaderModifier{ResponseHeaderModifier: hdrMod(map[string]string{"x-upstream": "replaced"}, map[string]string{"x-resp": "r"}, "x-drop")}},
	}
	rt.Backends[0].Filters = []*snapshotv1.Filter{
		{Kind: &snapshotv1.Filter_RequestHeaderModifier{RequestHeaderModifier: hdrMod(nil, map[string]string{"x-add": "backend"})}},
	}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{rt}, []backendSpec{svc}))

	req, _ := http.NewRequest("GET", url(port, "/x"), nil)
	req.Header.Set("X-Set", "client")
	req.Header.Set("X-Add", "client")
	req.Header.Set("X-Gone", "client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(b), `set=rule add=[client rule backend] gone=""`; got != want {
		t.Errorf("upstream saw %s, want %s", got, want)
	}
	if resp.Header.Get("X-Upstream") != "replaced" || resp.Header.Get("X-Resp") != "r" || resp.Header.Get("X-Drop") != "" {
		t.Errorf("response headers %v", resp.Header)
	}
}

func TestRedirects(t *testing.T) {
	svc := backendSpec{name: "svc", addrs: []string{"127.0.0.1:1"}}
	redir := func(name, prefix string, rr *snapshotv1.RequestRedirect) *snapshotv1.Route {
		rt := route(name, prefix, ref(svc, 1))
		rt.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_RequestRedirect{RequestRedirect: rr}}}
		return rt
	}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{
		redir("scheme", "/scheme", &snapshotv1.RequestRedirect{Scheme: "https", StatusCode: 301}),
		redir("host", "/host", &snapshotv1.RequestRedirect{Hostname: "other.example"}),
		redir("port", "/port", &snapshotv1.RequestRedirect{Port: 8443, Scheme: "https"}),
		redir("full", "/full", &snapshotv1.RequestRedirect{Path: &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_FULL_PATH, Value: "/new"}}),
		redir("prefix", "/prefix", &snapshotv1.RequestRedirect{Path: &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_PREFIX_MATCH, Value: "/p2"}}),
	}, []backendSpec{svc}))
	for _, tc := range []struct {
		path, host string
		status     int
		loc        string
	}{
		{"/scheme/a?q=1", "example.com:8080", 301, "https://example.com/scheme/a?q=1"},
		{"/host/a", "example.com:8080", 302, "http://other.example:8080/host/a"},
		{"/port", "example.com", 302, "https://example.com:8443/port"},
		{"/full/a/b", "example.com", 302, "http://example.com/new"},
		{"/prefix/a/b", "example.com", 302, "http://example.com/p2/a/b"},
		{"/prefix", "example.com", 302, "http://example.com/p2"},
	} {
		req, _ := http.NewRequest("GET", url(port, tc.path), nil)
		req.Host = tc.host
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.loc {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.loc)
		}
	}
}

func TestURLRewrite(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	rw := func(name, prefix, host string, pm *snapshotv1.PathModifier) *snapshotv1.Route {
		rt := route(name, prefix, ref(svc, 1))
		rt.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_UrlRewrite{UrlRewrite: &snapshotv1.URLRewrite{Hostname: host, Path: pm}}}}
		return rt
	}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{
		rw("host", "/host", "rewritten.example", nil),
		rw("full", "/full", "", &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_FULL_PATH, Value: "/v1/models"}),
		rw("prefix", "/api", "", &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_PREFIX_MATCH, Value: "/v1"}),
		rw("strip", "/strip", "", &snapshotv1.PathModifier{Type: snapshotv1.PathModifier_REPLACE_PREFIX_MATCH, Value: "/"}),
	}, []backendSpec{svc}))
	for _, tc := range []struct{ path, wantPath, wantHost string }{
		{"/host/x", "/host/x", "rewritten.example"},
		{"/full/a/b", "/v1/models", ""},
		{"/api/chat/completions", "/v1/chat/completions", ""},
		{"/api", "/v1", ""},
		{"/strip/three", "/three", ""},
		{"/strip", "/", ""},
	} {
		resp, err := http.Get(url(port, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		e := decodeEcho(t, resp)
		if e.Path != tc.wantPath || (tc.wantHost != "" && e.Host != tc.wantHost) {
			t.Errorf("%s: upstream got path %q host %q, want %q %q", tc.path, e.Path, e.Host, tc.wantPath, tc.wantHost)
		}
	}
}

func TestRequestMirror(t *testing.T) {
	main := echo(t)
	var mu sync.Mutex
	var mirrored []string
	mirrorBE := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		mirrored = append(mirrored, r.URL.Path+" "+string(b))
		mu.Unlock()
		// A failing, slow mirror must not affect the client.
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(500)
	}))
	t.Cleanup(mirrorBE.Close)
	svc := backendSpec{name: "svc", addrs: []string{addr(main)}}
	shadow := backendSpec{name: "shadow", addrs: []string{addr(mirrorBE)}}
	mir := func(name, prefix string, pct float64) *snapshotv1.Route {
		rt := route(name, prefix, ref(svc, 1))
		rt.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_RequestMirror{RequestMirror: &snapshotv1.RequestMirror{Backend: ref(shadow, 1), Percent: pct}}}}
		return rt
	}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{mir("all", "/all", 100), mir("none", "/none", 0), mir("half", "/half", 50)},
		[]backendSpec{svc, shadow}))

	post := func(path, body string) {
		resp, err := http.Post(url(port, path), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if e := decodeEcho(t, resp); e.Body != body {
			t.Fatalf("client response affected: %+v", e)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(mirrored) }
	post("/all", `{"model":"m","n":1}`)
	testwait.Until(t, "mirror copy", func() bool { return count() == 1 })
	mu.Lock()
	if mirrored[0] != `/all {"model":"m","n":1}` {
		t.Errorf("mirror got %q", mirrored[0])
	}
	mu.Unlock()
	for range 20 {
		post("/none", `{"model":"m"}`)
	}
	const n = 200
	for range n {
		post("/half", `{"model":"m"}`)
	}
	time.Sleep(100 * time.Millisecond)
	testwait.Until(t, "mirrors settle", func() bool {
		return m.Endpoints().Statuses()[1].InFlight == 0 && m.Endpoints().Statuses()[0].InFlight == 0
	})
	got := count() - 1
	// 50% of 200: the binomial's 5-sigma band is 65–135.
	if got < 65 || got > 135 {
		t.Errorf("mirrored %d of %d at 50%% (0%% route must add none)", got, n)
	}
}

// counter is a backend that answers with a fixed status and counts hits.
func counter(t *testing.T, status int, hits *atomic.Int32) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits.Add(1)
		w.WriteHeader(status)
		fmt.Fprintf(w, "%d %s", status, b)
	}))
	t.Cleanup(s.Close)
	return s
}

// aborting is a backend that sends the status line and part of an SSE
// body, then dies: the client has seen the response, so the request must
// not be sent anywhere again.
func aborting(t *testing.T, hits *atomic.Int32) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRetries(t *testing.T) {
	var bad, good, aborts atomic.Int32
	badBE := counter(t, 503, &bad)
	goodBE := counter(t, 200, &good)
	abortBE := aborting(t, &aborts)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	withRetry := func(rt *snapshotv1.Route, attempts uint32, codes ...uint32) *snapshotv1.Route {
		rt.Retry = &snapshotv1.Retry{Attempts: attempts, Codes: codes, BackoffMs: 1}
		return rt
	}
	mixed := backendSpec{name: "mixed", addrs: []string{addr(badBE), addr(goodBE)}}
	allBad := backendSpec{name: "allbad", addrs: []string{addr(badBE)}}
	deadThenGood := backendSpec{name: "dead", addrs: []string{dead, addr(goodBE)}}
	streamy := backendSpec{name: "streamy", addrs: []string{addr(abortBE), addr(goodBE)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{
		withRetry(route("mixed", "/mixed", ref(mixed, 1)), 2, 503),
		withRetry(route("other", "/other-code", ref(allBad, 1)), 3, 500),
		withRetry(route("exhaust", "/exhaust", ref(allBad, 1)), 3, 503),
		withRetry(route("dead", "/dead", ref(deadThenGood, 1)), 2),
		withRetry(route("streamy", "/streamy", ref(streamy, 1)), 2),
	}, []backendSpec{mixed, allBad, deadThenGood, streamy}))

	post := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Post(url(port, path), "application/json", strings.NewReader(`{"model":"m"}`))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Run("retryable status goes to the other endpoint", func(t *testing.T) {
		for range 10 {
			bad.Store(0)
			good.Store(0)
			code, body := post("/mixed")
			if code != 200 || body != `200 {"model":"m"}` {
				t.Fatalf("got %d %q", code, body)
			}
			if b, g := bad.Load(), good.Load(); g != 1 || b > 1 {
				t.Fatalf("bad %d good %d hits", b, g)
			}
		}
	})
	t.Run("status not listed is not retried", func(t *testing.T) {
		bad.Store(0)
		if code, _ := post("/other-code"); code != 503 || bad.Load() != 1 {
			t.Fatalf("code %d after %d attempts", code, bad.Load())
		}
	})
	t.Run("last attempt's answer reaches the client", func(t *testing.T) {
		bad.Store(0)
		if code, body := post("/exhaust"); code != 503 || body != `503 {"model":"m"}` || bad.Load() != 3 {
			t.Fatalf("code %d %q after %d attempts", code, body, bad.Load())
		}
	})
	t.Run("connect failure is retried", func(t *testing.T) {
		for range 5 {
			if code, _ := post("/dead"); code != 200 {
				t.Fatalf("code %d", code)
			}
		}
	})
	t.Run("never after the client saw the response", func(t *testing.T) {
		for range 6 {
			aborts.Store(0)
			good.Store(0)
			code, _ := post("/streamy")
			if a, g := aborts.Load(), good.Load(); a+g != 1 {
				t.Fatalf("aborting endpoint hit %d times, good %d (client status %d): duplicated", a, g, code)
			}
		}
	})
}

func TestTimeouts(t *testing.T) {
	var slowHits, fastHits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	fast := counter(t, 200, &fastHits)
	onlySlow := backendSpec{name: "slow", addrs: []string{addr(slow)}}
	both := backendSpec{name: "both", addrs: []string{addr(slow), addr(fast)}}
	req := route("req", "/request", ref(onlySlow, 1))
	req.Timeouts = &snapshotv1.Timeouts{RequestMs: 100}
	per := route("per", "/per-attempt", ref(both, 1))
	per.Timeouts = &snapshotv1.Timeouts{BackendRequestMs: 100, RequestMs: 3000}
	per.Retry = &snapshotv1.Retry{Attempts: 2}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{req, per}, []backendSpec{onlySlow, both}))

	resp, err := http.Post(url(port, "/request"), "application/json", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, resp, 504, "upstream_timeout")
	for range 4 {
		resp, err := http.Post(url(port, "/per-attempt"), "application/json", strings.NewReader(`{"model":"m"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("per-attempt timeout then retry: status %d", resp.StatusCode)
		}
	}
}
