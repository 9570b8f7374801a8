package xds_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/tracing"
	"github.com/infergate/infergate/proto/xdsclient"
)

// TestTracePushAndDelivery: every served snapshot gets a push span under
// the caller's span, and every response a proxy gets a delivery span under
// that push, ended by the proxy's ACK — or its NACK, with the reason.
func TestTracePushAndDelivery(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracer := tp.Tracer("test")
	srv := xds.NewServer(quietLogger(), xds.WithTracer(tracer))
	addr, _ := serve(t, srv, "127.0.0.1:0")
	proxy := &recorder{reject: func(r xdsclient.Resources) error {
		if _, complete := r.Complete(); complete {
			if _, ok := r[snapshotv1.TypeRoute][gwA+"/default/bad/0"]; ok {
				return errBadRoute
			}
		}
		return nil
	}}
	startClient(t, addr, gwA, "p1", proxy)

	w := world{listeners: 1, routes: map[string]string{"good": "/"}, endpoints: []string{"10.0.0.1"}}
	good := w.set(t, gwA)
	ctx, parent := tracer.Start(context.Background(), "translation")
	srv.UpdateContext(ctx, map[string]*snapshot.Set{gwA: good})
	parent.End()
	eventually(t, "synced", func() bool { ps := srv.Proxies(); return len(ps) == 1 && !ps[0].Stale })
	if st := srv.Stats(); st.StaleProxies != 0 {
		t.Errorf("in sync: %d proxies stale", st.StaleProxies)
	}
	w.routes["bad"] = "nope"
	bad := w.set(t, gwA)
	srv.Update(map[string]*snapshot.Set{gwA: bad})
	eventually(t, "NACK delivery span", func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == tracing.SpanDeliver && sp.Status().Code == codes.Error {
				return true
			}
		}
		return false
	})

	if st := srv.Stats(); st.StaleProxies != 1 || st.ConnectedProxies != 1 {
		t.Errorf("after a NACK: %d of %d proxies stale, want 1 of 1", st.StaleProxies, st.ConnectedProxies)
	}

	pushes := map[string]sdktrace.ReadOnlySpan{} // by version
	for _, sp := range rec.Ended() {
		if sp.Name() == tracing.SpanPush {
			v, _ := attr(sp, tracing.AttrVersion)
			pushes[v] = sp
		}
	}
	if p := pushes[good.Version]; p == nil || p.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("push of %s missing or not under the translation span", good.Version)
	}
	if pushes[bad.Version] == nil {
		t.Fatalf("no push span for %s", bad.Version)
	}
	var acked, nacked int
	for _, sp := range rec.Ended() {
		if sp.Name() != tracing.SpanDeliver {
			continue
		}
		v, _ := attr(sp, tracing.AttrVersion)
		push := pushes[v]
		if push == nil || sp.Parent().SpanID() != push.SpanContext().SpanID() {
			t.Errorf("delivery of %s is not a child of its push", v)
		}
		if node, _ := attr(sp, tracing.AttrNode); node != "p1" {
			t.Errorf("delivery node %q", node)
		}
		if sp.Status().Code == codes.Error {
			nacked++
			if reason, _ := attr(sp, tracing.AttrNack); v != bad.Version || reason != errBadRoute.Error() {
				t.Errorf("NACKed delivery of %s with reason %q", v, reason)
			}
		} else {
			acked++
		}
	}
	// Every type of the good snapshot ACKed; the bad one NACKed once.
	if acked < len(snapshotv1.Types()) || nacked != 1 {
		t.Errorf("%d ACKed and %d NACKed deliveries", acked, nacked)
	}
}

func attr(sp sdktrace.ReadOnlySpan, key string) (string, bool) {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit(), true
		}
	}
	return "", false
}
