package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/proto/freeport"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const gw = "ns/gw"

// freePort returns a port that was free a moment ago on 127.0.0.1 (see
// package freeport for why not port 0).
func freePort(t testing.TB) uint32 {
	t.Helper()
	port, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(port)
}

func newManager(t testing.TB) *server.Manager {
	return newManagerWith(t, server.Options{})
}

// newManagerWith is newManager with some options set (the test defaults
// fill the rest). INFERGATE_TEST_UPSTREAM_HTTP1=stdlib runs the tests on
// the other HTTP/1 upstream client, INFERGATE_TEST_HTTP1_SERVER=stdlib on
// net/http's server instead of the lean one.
func newManagerWith(t testing.TB, opts server.Options) *server.Manager {
	t.Helper()
	return newManagerLogged(t, opts, slog.New(slog.DiscardHandler))
}

// newManagerLogged is newManagerWith logging to logger.
func newManagerLogged(t testing.TB, opts server.Options, logger *slog.Logger) *server.Manager {
	t.Helper()
	if opts.Pipeline.Upstream.HTTP1 == "" {
		mode, err := upstream.ParseHTTP1Mode(os.Getenv("INFERGATE_TEST_UPSTREAM_HTTP1"))
		if err != nil {
			t.Fatal(err)
		}
		opts.Pipeline.Upstream.HTTP1 = mode
	}
	if opts.HTTP1Server == "" {
		mode, err := http1.ParseMode(os.Getenv("INFERGATE_TEST_HTTP1_SERVER"))
		if err != nil {
			t.Fatal(err)
		}
		opts.HTTP1Server = mode
	}
	opts.BindAddress = "127.0.0.1"
	opts.DrainTimeout = 2 * time.Second
	opts.Pipeline.Endpoints = endpoints.Options{Interval: 10 * time.Millisecond}
	m := server.New(logger, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// backendSpec is one backend of a test snapshot.
type backendSpec struct {
	name  string // short name, e.g. "svc"
	pool  bool
	h2c   bool
	addrs []string // "127.0.0.1:port"
	tls   *snapshotv1.BackendTLS
}

func (b backendSpec) resourceName() string {
	if b.pool {
		return gw + "/inferencepool/ns/" + b.name
	}
	return gw + "/service/ns/" + b.name + ":80"
}

// snapshot builds a gateway with one HTTP listener per port; every route is
// attached to every listener.
func snapshot(ports []uint32, routes []*snapshotv1.Route, backends []backendSpec, extra ...snapshotv1.Named) []snapshotv1.Named {
	var rs []snapshotv1.Named
	var lns []string
	for _, p := range ports {
		name := gw + "/l" + strconv.Itoa(int(p))
		lns = append(lns, name)
		rs = append(rs, &snapshotv1.Listener{Name: name, Gateway: gw, Port: p, Protocol: snapshotv1.Listener_HTTP})
	}
	for _, r := range routes {
		r.Listeners = lns
		rs = append(rs, r)
	}
	for _, b := range backends {
		kind, ap := snapshotv1.Backend_SERVICE, snapshotv1.Backend_HTTP1
		if b.pool {
			kind = snapshotv1.Backend_INFERENCE_POOL
		}
		if b.h2c {
			ap = snapshotv1.Backend_H2C
		}
		eps := &snapshotv1.Endpoints{Name: b.resourceName()}
		for _, a := range b.addrs {
			host, port, _ := net.SplitHostPort(a)
			p, _ := strconv.Atoi(port)
			eps.Endpoints = append(eps.Endpoints, &snapshotv1.Endpoint{Address: host, Port: uint32(p), Pod: "ns/" + a})
		}
		rs = append(rs, &snapshotv1.Backend{Name: b.resourceName(), Kind: kind, Source: "ns/" + b.name, AppProtocol: ap, Endpoints: eps.Name, Tls: b.tls}, eps)
	}
	return append(rs, extra...)
}

func route(name, pathPrefix string, refs ...*snapshotv1.BackendRef) *snapshotv1.Route {
	return &snapshotv1.Route{Name: gw + "/ns/" + name + "/0", Route: "ns/" + name,
		Matches:  []*snapshotv1.RouteMatch{{Path: &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: pathPrefix}}},
		Backends: refs}
}

func ref(b backendSpec, weight uint32) *snapshotv1.BackendRef {
	return &snapshotv1.BackendRef{Backend: b.resourceName(), Weight: weight}
}

func compile(t testing.TB, rs []snapshotv1.Named) *config.Config {
	t.Helper()
	c, err := config.Compile(configtest.Resources(gw, rs...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apply(t testing.TB, m *server.Manager, rs []snapshotv1.Named) {
	t.Helper()
	if err := m.Apply(compile(t, rs)); err != nil {
		t.Fatal(err)
	}
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func url(port uint32, path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(int(port)) + path
}

type apiError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

// expectError checks status and that the body is an OpenAI error with code.
func expectError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != code || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("want OpenAI error with code %q, got %s (%v)", code, b, err)
	}
}

// withProfile gives every backend of rs the picker profile p.
func withProfile(rs []snapshotv1.Named, p *snapshotv1.PickerProfile) []snapshotv1.Named {
	for _, r := range rs {
		if b, ok := r.(*snapshotv1.Backend); ok {
			b.Picker = p
		}
	}
	return rs
}

// scrapeMetrics returns m's /metrics page.
func scrapeMetrics(t *testing.T, m *server.Manager) string {
	t.Helper()
	_, body := adminGet(t, m, "/metrics")
	return body
}

// checkMetrics scrapes m's /metrics page, reports each wanted line it
// lacks (with the page's own series logged then) and returns the page.
func checkMetrics(t *testing.T, m *server.Manager, want ...string) string {
	t.Helper()
	text := scrapeMetrics(t, m)
	lacks := false
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("metrics lack %s", w)
			lacks = true
		}
	}
	if lacks {
		for l := range strings.SplitSeq(text, "\n") {
			if strings.HasPrefix(l, "inference") || strings.HasPrefix(l, "infergate") {
				t.Log(l)
			}
		}
	}
	return text
}

// adminGet returns the status and body of m's admin API at path.
func adminGet(t *testing.T, m *server.Manager, path string) (int, string) {
	t.Helper()
	admin := httptest.NewServer(m.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// ok200 closes the response and says why it is not a 200, if it is not.
func ok200(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// serviceAt serves be as the plain Service behind one route for "/" on a
// fresh port.
func serviceAt(t *testing.T, be *httptest.Server) (*server.Manager, uint32) {
	t.Helper()
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc}))
	return m, port
}

// foodReviewPool serves be as the one pool behind a fresh proxy's listener,
// with the model rule food-review → food-review-lora (the rewrite most
// OpenAI-surface tests exercise), and returns the proxy and its port.
func foodReviewPool(t *testing.T, be *httptest.Server) (*server.Manager, uint32) {
	t.Helper()
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool},
		&snapshotv1.ModelRule{Name: gw + "/InferenceModel/ns/fr", Pool: pool.resourceName(), ModelName: "food-review",
			Targets: []*snapshotv1.TargetModel{{Name: "food-review-lora", Weight: 1}}}))
	return m, port
}
