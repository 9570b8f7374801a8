package extproc

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/extproc/extproctest"
)

// BenchmarkExchange is one request's whole conversation with a picker
// that does no work (the conformance picker's answers): stream, headers
// and a body, the answer, the response headers, close — over TLS, as
// pickers serve by default, and in plain text.
func BenchmarkExchange(b *testing.B) {
	for _, tc := range []struct {
		name      string
		plaintext bool
		body      int
	}{{"tls/1KB", false, 1 << 10}, {"plaintext/1KB", true, 1 << 10}, {"tls/220KB", false, 220 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			pk := extproctest.Start(b, tc.plaintext, extproctest.LWEPPLike(func(*extprocv3.ProcessingRequest) string { return "10.0.0.2:8000" }))
			c := NewClient(slog.New(slog.DiscardHandler), Options{MaxBodyBytes: 1 << 20})
			b.Cleanup(c.Close)
			var eps []*endpoints.Endpoint
			for _, a := range []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"} {
				eps = append(eps, endpoints.New(endpoints.Spec{Address: a}))
			}
			p := c.Picker(&config.Backend{Name: "gw/pool", Source: "ns/pool", Kind: config.InferencePool,
				Picker: &config.EndpointPicker{Service: "ns/epp:9002", Plaintext: tc.plaintext, Addresses: []string{pk.Addr},
					Key: pk.Addr + strconv.FormatBool(tc.plaintext)}}, eps)
			body := bytes.Repeat([]byte("x"), tc.body)
			hdr := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}, "User-Agent": {"bench"}}
			ctx := context.Background()
			b.SetBytes(int64(tc.body))
			b.ReportAllocs()
			for b.Loop() {
				x, err := p.Start(ctx, &Request{Method: "POST", Path: "/v1/completions", Authority: "gw", Scheme: "http", Header: hdr, Body: body})
				if err != nil {
					b.Fatal(err)
				}
				x.Response(200, http.Header{"Content-Type": {"application/json"}}, "10.0.0.2:8000")
				x.Close()
			}
		})
	}
}
