package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string // "" = valid
	}{
		{Options{}, ""},
		{Options{Endpoint: "http://collector:4317", SampleRatio: 1}, ""},
		{Options{Endpoint: "https://collector:4318/v1/traces", Protocol: ProtocolHTTP, SampleRatio: 0.01}, ""},
		{Options{Endpoint: "collector:4317", SampleRatio: 1}, "http:// or https://"},
		{Options{Endpoint: "http://collector", SampleRatio: 1}, "host:port"},
		{Options{Endpoint: "http://collector:4317/v1/traces", SampleRatio: 1}, "no path"},
		{Options{Endpoint: "http://u:p@collector:4317", SampleRatio: 1}, "credentials"},
		{Options{Endpoint: "http://collector:4317", SampleRatio: 1.5}, "0 to 1"},
		{Options{SampleRatio: math.NaN()}, "0 to 1"},
		{Options{Endpoint: "http://collector:4317", Protocol: "zipkin"}, "--tracing-protocol"},
	} {
		err := c.o.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}

// TestStartHTTP: with http/protobuf and no path, spans go to /v1/traces and
// Close flushes them; tracing off is a nil provider with a nil tracer.
func TestStartHTTP(t *testing.T) {
	var posts atomic.Int32
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		path.Store(r.URL.Path)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	logger := slog.New(slog.DiscardHandler)
	p, err := Start(context.Background(), Options{Endpoint: srv.URL, Protocol: ProtocolHTTP, SampleRatio: 1}, "svc", "i1", logger)
	if err != nil {
		t.Fatal(err)
	}
	_, sp := p.Tracer("t").Start(context.Background(), "s")
	sp.End()
	p.Close()
	if posts.Load() == 0 || path.Load() != "/v1/traces" {
		t.Fatalf("collector got %d posts, last to %v", posts.Load(), path.Load())
	}

	off, err := Start(context.Background(), Options{SampleRatio: 1}, "svc", "i1", logger)
	if err != nil || off != nil || off.Tracer("t") != nil {
		t.Fatalf("off: %v %v", off, err)
	}
	off.Close()
}

func TestErrorHandlerRateLimits(t *testing.T) {
	var buf bytes.Buffer
	h := &ErrorHandler{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Every: time.Hour}
	for range 5 {
		h.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "exporting spans failed"); n != 1 {
		t.Fatalf("%d log lines for 5 errors within the interval:\n%s", n, buf.String())
	}
	h.last = time.Now().Add(-2 * time.Hour)
	h.Handle(errors.New("connection refused"))
	if !strings.Contains(buf.String(), "suppressed=4") {
		t.Fatalf("the next line does not count the 4 left out:\n%s", buf.String())
	}
}
