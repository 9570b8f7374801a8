package extproc

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc/extproctest"
)

// pool is a test pool of three endpoints.
func pool(t *testing.T) []*endpoints.Endpoint {
	t.Helper()
	var eps []*endpoints.Endpoint
	for _, a := range []string{"10.0.0.1:8000", "10.0.0.2:8000", "[fd00::3]:8000"} {
		eps = append(eps, endpoints.New(endpoints.Spec{Address: a}))
	}
	return eps
}

// newTestPicker returns a picker for a pool backend whose picker is at
// addr (none: no endpoints), with timeout.
func newTestPicker(t *testing.T, addr string, plaintext bool, timeout time.Duration) (*Client, *Picker, []*endpoints.Endpoint) {
	t.Helper()
	c := NewClient(slog.New(slog.DiscardHandler), Options{Timeout: timeout, MaxBodyBytes: 1 << 20, Registerer: prometheus.NewRegistry()})
	t.Cleanup(c.Close)
	cfg := &config.EndpointPicker{Service: "ns/epp:9002", Plaintext: plaintext, Key: addr + strconv.FormatBool(plaintext)}
	if addr != "" {
		cfg.Addresses = []string{addr}
	}
	eps := pool(t)
	return c, c.Picker(backendWith(cfg), eps), eps
}

func backendWith(cfg *config.EndpointPicker) *config.Backend {
	return &config.Backend{Name: "gw/pool", Source: "ns/pool", Kind: config.InferencePool, Picker: cfg}
}

// always picks dest.
func always(dest string) func(s extproctest.Stream) error {
	return extproctest.LWEPPLike(func(*extprocv3.ProcessingRequest) string { return dest })
}

func testRequest(body []byte) *Request {
	return &Request{Method: http.MethodPost, Path: "/v1/completions", Authority: "gw.example.com", Scheme: "http",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}, "X-Multi": {"1", "2"}}, Body: body}
}

// eofOrCanceled reports a stream end a client's close produces.
func eofOrCanceled(err error) bool {
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "context canceled") || strings.Contains(err.Error(), "Canceled")
}
