package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestCORS sends preflights and actual requests through a running proxy: a
// preflight is answered by the proxy (the backend never sees it), an
// allowed origin's responses carry the Access-Control-* headers over any
// the backend sent, and other origins get none.
func TestCORS(t *testing.T) {
	var seen atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "https://backend.example")
		w.Header().Set("Vary", "Accept-Encoding")
		_, _ = io.WriteString(w, r.Method)
	}))
	t.Cleanup(be.Close)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	creds := route("creds", "/cors", ref(svc, 1))
	creds.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_Cors{Cors: &snapshotv1.CORS{
		AllowOrigins: []string{"https://www.foo.com", "https://*.bar.com"}, AllowMethods: []string{"GET", "OPTIONS"},
		AllowHeaders: []string{"x-header-1", "x-header-2"}, ExposeHeaders: []string{"x-header-3"},
		AllowCredentials: true, MaxAgeSeconds: 3600,
	}}}}
	// On the backendRef: applies because the rule has none.
	anyRef := ref(svc, 1)
	anyRef.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_Cors{Cors: &snapshotv1.CORS{
		AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"},
	}}}}
	anyOrigin := route("any", "/any", anyRef)
	plain := route("plain", "/plain", ref(svc, 1))
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{creds, anyOrigin, plain}, []backendSpec{svc}))

	do := func(method, path string, h map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url(port, path), nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	want := func(name string, resp *http.Response, status int, hs map[string]string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, status)
		}
		for k, v := range hs {
			got := resp.Header.Values(k)
			if v == "" && len(got) > 0 {
				t.Errorf("%s: %s: %q, want none", name, k, got)
			}
			if v != "" && (len(got) != 1 || got[0] != v) {
				t.Errorf("%s: %s: %q, want %q", name, k, got, v)
			}
		}
	}

	resp, _ := do("OPTIONS", "/cors/x", map[string]string{"Origin": "https://xpto.www.bar.com",
		"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-header-1"})
	want("preflight, wildcard host", resp, 204, map[string]string{
		"Access-Control-Allow-Origin": "https://xpto.www.bar.com", "Access-Control-Allow-Methods": "GET, OPTIONS",
		"Access-Control-Allow-Headers": "x-header-1, x-header-2", "Access-Control-Expose-Headers": "x-header-3",
		"Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
	})
	resp, _ = do("OPTIONS", "/cors/x", map[string]string{"Origin": "https://foobar.com", "Access-Control-Request-Method": "GET"})
	want("preflight, other origin", resp, 204, map[string]string{
		"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Max-Age": "",
	})
	if n := seen.Load(); n != 0 {
		t.Errorf("the backend saw %d preflights", n)
	}

	resp, body := do("GET", "/cors/x", map[string]string{"Origin": "https://www.foo.com"})
	want("actual, allowed", resp, 200, map[string]string{
		"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Credentials": "true",
		"Access-Control-Expose-Headers": "x-header-3", "Access-Control-Max-Age": "", "Access-Control-Allow-Methods": "",
	})
	if vary := resp.Header.Values("Vary"); len(vary) != 2 || body != "GET" {
		t.Errorf("actual: Vary %q (want Origin and the backend's), body %q", vary, body)
	}
	resp, _ = do("GET", "/cors/x", map[string]string{"Origin": "https://foobar.com"})
	want("actual, other origin: the backend's header stands", resp, 200, map[string]string{
		"Access-Control-Allow-Origin": "https://backend.example", "Access-Control-Allow-Credentials": "",
	})
	// OPTIONS that is no preflight goes to the backend.
	resp, body = do("OPTIONS", "/cors/x", map[string]string{"Origin": "https://www.foo.com"})
	want("options without request method", resp, 200, map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com"})
	if body != "OPTIONS" {
		t.Errorf("a non-preflight OPTIONS did not reach the backend: %q", body)
	}

	resp, _ = do("OPTIONS", "/any", map[string]string{"Origin": "https://foobar.com:12345",
		"Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "x-a, x-b"})
	want("preflight, backendRef wildcards", resp, 204, map[string]string{
		"Access-Control-Allow-Origin": "https://foobar.com:12345", "Access-Control-Allow-Methods": "PATCH",
		"Access-Control-Allow-Headers": "x-a, x-b", "Access-Control-Max-Age": "5", "Access-Control-Allow-Credentials": "",
	})
	resp, _ = do("OPTIONS", "/plain", map[string]string{"Origin": "https://www.foo.com", "Access-Control-Request-Method": "GET"})
	want("no CORS filter: the backend answers", resp, 200, map[string]string{"Access-Control-Allow-Origin": "https://backend.example"})
}
