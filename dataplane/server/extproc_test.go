package server_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/extproc/extproctest"
	"github.com/infergate/infergate/dataplane/server"
	"github.com/infergate/infergate/dataplane/upstream"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// pickerPool is a pool of n echo backends behind one route, its picker at
// pickerAddrs (plain text).
type pickerPool struct {
	m     *server.Manager
	logs  *logBuffer
	port  uint32
	bes   []*httptest.Server
	addrs []string
}

func newPickerPool(t *testing.T, n int, failOpen bool, pickerAddrs []string, retry *snapshotv1.Retry, extraAddrs ...string) *pickerPool {
	t.Helper()
	pp := &pickerPool{port: freePort(t)}
	for range n {
		be := echo(t)
		pp.bes = append(pp.bes, be)
		pp.addrs = append(pp.addrs, addr(be))
	}
	pool := backendSpec{name: "pool", pool: true, addrs: append(append([]string{}, pp.addrs...), extraAddrs...)}
	r := route("r", "/", ref(pool, 1))
	r.Retry = retry
	rs := snapshot([]uint32{pp.port}, []*snapshotv1.Route{r}, []backendSpec{pool})
	ep := &snapshotv1.EndpointPicker{Service: "ns/epp:9002", Plaintext: true, Timeout: durationpb.New(2 * time.Second)}
	if failOpen {
		ep.FailureMode = snapshotv1.EndpointPicker_FAIL_OPEN
	}
	if pickerAddrs != nil {
		eps := &snapshotv1.Endpoints{Name: gw + "/endpointpicker/ns/epp:9002"}
		for _, a := range pickerAddrs {
			host, port, _ := net.SplitHostPort(a)
			p, _ := strconv.Atoi(port)
			eps.Endpoints = append(eps.Endpoints, &snapshotv1.Endpoint{Address: host, Port: uint32(p)})
		}
		ep.Endpoints = eps.Name
		rs = append(rs, eps)
	} else {
		ep.InvalidReason = "endpoint picker Service ns/epp not found"
	}
	for _, res := range rs {
		if b, ok := res.(*snapshotv1.Backend); ok {
			b.EndpointPicker = ep
		}
	}
	pp.logs = &logBuffer{}
	pp.m = newManagerLogged(t, server.Options{}, slog.New(slog.NewTextHandler(pp.logs, nil)))
	apply(t, pp.m, rs)
	return pp
}

// byHeader picks the endpoint a request's x-pick header names.
func byHeader(headers *extprocv3.ProcessingRequest) string {
	if v := extproctest.Header(headers, "x-pick"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func post(t *testing.T, port uint32, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url(port, "/v1/completions"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestExternalPickerRoutes: each request goes where the picker says, with
// the picker's header changes; the picker learns who served and its
// response header edits reach the client.
func TestExternalPickerRoutes(t *testing.T) {
	pk := extproctest.Start(t, true, extproctest.LWEPPLike(byHeader))
	pp := newPickerPool(t, 3, false, []string{pk.Addr}, nil)
	for i, a := range pp.addrs {
		resp := post(t, pp.port, map[string]string{"x-pick": a, "x-gateway-destination-endpoint": pp.addrs[(i+1)%3]},
			`{"model":"m","prompt":"hi"}`)
		if got := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); got != a {
			t.Fatalf("served by %s, picker chose %s", got, a)
		}
		if got := resp.Header.Get("X-Served-By"); got != a {
			t.Fatalf("picker was told %q served, want %s", got, a)
		}
		e := decodeEcho(t, resp)
		if e.Headers["X-Gateway-Destination-Endpoint"] != a {
			t.Fatalf("backend saw destination header %q (a client's value must not survive)", e.Headers["X-Gateway-Destination-Endpoint"])
		}
		if e.Body != `{"model":"m","prompt":"hi"}` {
			t.Fatalf("backend got body %q", e.Body)
		}
	}
	msgs := pk.Received(0)
	if got := extproctest.Header(msgs[0], ":path"); len(got) != 1 || got[0] != "/v1/completions" {
		t.Fatalf("picker saw :path %v", got)
	}
	checkMetrics(t, pp.m, `infergate_endpoint_picker_requests_total{outcome="picked",picker="ns/epp:9002"} 3`)
}

// TestExternalPickerFallbacks: the picker's list is tried in order under
// the route's retry policy; endpoints outside the pool are skipped.
func TestExternalPickerFallbacks(t *testing.T) {
	dead := freePort(t)
	deadAddr := "127.0.0.1:" + strconv.Itoa(int(dead))
	var list string
	pk := extproctest.Start(t, true, extproctest.LWEPPLike(func(*extprocv3.ProcessingRequest) string { return list }))
	pp := newPickerPool(t, 2, false, []string{pk.Addr}, &snapshotv1.Retry{Attempts: 3}, deadAddr)
	list = "10.9.9.9:80," + deadAddr + "," + pp.addrs[1]
	resp := post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`)
	if got := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); got != pp.addrs[1] {
		t.Fatalf("served by %q, want the first live entry %s", got, pp.addrs[1])
	}
	decodeEcho(t, resp)
	checkMetrics(t, pp.m, `infergate_endpoint_picker_refused_destinations_total{picker="ns/epp:9002"} 1`)
}

// TestExternalPickerFailureModes: with the picker gone, FailClose answers
// 503 with an OpenAI error and FailOpen keeps serving from the pool.
func TestExternalPickerFailureModes(t *testing.T) {
	pk := extproctest.Start(t, true, extproctest.LWEPPLike(byHeader))
	closed := pk.Addr
	pk.Stop()
	for _, tc := range []struct {
		name    string
		pickers []string
		reason  string
	}{
		{"unreachable", []string{closed}, "unavailable"},
		{"no endpoints", []string{}, "no_endpoints"},
		{"invalid reference", nil, "invalid_reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pp := newPickerPool(t, 2, false, tc.pickers, nil)
			resp := post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`)
			id := resp.Header.Get(upstream.RequestIDHeader)
			expectError(t, resp, http.StatusServiceUnavailable, "endpoint_picker_unavailable")
			if l := pp.logs.line("level=WARN", "request_id="+id, "status=503", "cause="); id == "" || l == "" {
				t.Errorf("the FailClose 503 (request %q) is not logged at WARN with its request id and cause:\n%s", id, pp.logs.b.String())
			}
			checkMetrics(t, pp.m, `infergate_endpoint_picker_requests_total{outcome="failed_closed",picker="ns/epp:9002"} 1`,
				`infergate_endpoint_picker_errors_total{phase="request",picker="ns/epp:9002",reason="`+tc.reason+`"} 1`)

			open := newPickerPool(t, 2, true, tc.pickers, nil)
			resp = post(t, open.port, nil, `{"model":"m","prompt":"hi"}`)
			if s := resp.Header.Get("X-Gateway-Destination-Endpoint-Served"); s != open.addrs[0] && s != open.addrs[1] {
				t.Fatalf("FailOpen served by %q", s)
			}
			decodeEcho(t, resp)
			checkMetrics(t, open.m, `infergate_endpoint_picker_requests_total{outcome="failed_open",picker="ns/epp:9002"} 1`)
		})
	}
}

// TestExternalPickerImmediate: the picker's own answer goes to the client;
// an error status without a body becomes an OpenAI error.
func TestExternalPickerImmediate(t *testing.T) {
	var body []byte
	pk := extproctest.Start(t, true, func(s extproctest.Stream) error {
		if _, err := s.Recv(); err != nil {
			return nil
		}
		return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}, Body: body, Details: "sheddable request dropped",
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{extproctest.SetHeader("retry-after", "1")}},
		}}})
	})
	pp := newPickerPool(t, 1, false, []string{pk.Addr}, nil)
	resp := post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`)
	if resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("picker's header lost: %v", resp.Header)
	}
	expectError(t, resp, http.StatusTooManyRequests, "endpoint_picker_response")
	body = []byte("go away")
	resp = post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || string(b) != "go away" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// TestExternalPickerBodyMutation: a body the picker streams back is what
// the model server gets, with its own length.
func TestExternalPickerBodyMutation(t *testing.T) {
	var dest string
	pk := extproctest.Start(t, true, func(s extproctest.Stream) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return nil
			}
			if b := m.GetRequestBody(); b != nil && b.GetEndOfStream() {
				_ = s.Send(extproctest.HeadersAnswer(dest, dest))
				_ = s.Send(extproctest.StreamedBody([]byte(`{"model":"rewritten",`), false))
				_ = s.Send(extproctest.StreamedBody([]byte(`"prompt":"hi"}`), true))
			}
			if m.GetResponseHeaders() != nil {
				_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}})
			}
		}
	})
	pp := newPickerPool(t, 1, false, []string{pk.Addr}, nil)
	dest = pp.addrs[0]
	e := decodeEcho(t, post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`))
	if e.Body != `{"model":"rewritten","prompt":"hi"}` {
		t.Fatalf("backend got %q", e.Body)
	}
}

// TestExternalPickerRefusesStrangers: a picker naming only endpoints that
// are not the pool's fails (here closed: 503).
func TestExternalPickerRefusesStrangers(t *testing.T) {
	pk := extproctest.Start(t, true, extproctest.LWEPPLike(func(*extprocv3.ProcessingRequest) string { return "169.254.169.254:80" }))
	pp := newPickerPool(t, 1, false, []string{pk.Addr}, nil)
	expectError(t, post(t, pp.port, nil, `{"model":"m","prompt":"hi"}`), http.StatusServiceUnavailable, "endpoint_picker_unavailable")
	checkMetrics(t, pp.m, `reason="destination_not_in_pool"} 1`)
}
