package pipeline

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/upstream"
)

// maxMirrorsInFlight bounds the mirror copies outstanding at once; beyond
// it mirrors are dropped, so a slow mirror target can never pile up memory
// or goroutines in the proxy.
const maxMirrorsInFlight = 256

// mirrorTimeout bounds one mirrored exchange.
const mirrorTimeout = 60 * time.Second

// mirror sends a copy of r (headers and body as forwarded upstream) to the
// mirror's backend in the background and discards the answer. It never
// touches the client's response.
func (m *Pipeline) mirror(st *state, mi *config.Mirror, r *http.Request, body []byte) {
	bs := st.backends[mi.Name]
	if bs == nil || len(bs.eps) == 0 || bs.cfg.TLS != nil && bs.cfg.TLS.Invalid != "" {
		return // nowhere to send it (an unusable BackendTLSPolicy: 503s only)
	}
	select {
	case m.mirrorSem <- struct{}{}:
	default:
		m.logger.Debug("mirror dropped: too many in flight", "backend", mi.Name)
		return
	}
	t, scheme := m.up.Transport(bs.cfg.H2C), "http"
	if bt := bs.cfg.TLS; bt != nil {
		t, scheme = m.up.TLSTransport(bt.Key, bt.Config), "https"
	}
	ep, err := bs.picker.Pick(&picker.Request{Header: r.Header}, bs.eps)
	if err != nil {
		<-m.mirrorSem
		return
	}
	// The copy must outlive the client's request: its body buffer is
	// recycled when the handler returns.
	ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = scheme, ep.Address
	upstream.StripGatewayHeaders(out.Header)
	if body != nil {
		cp := bytes.Clone(body)
		out.Body = io.NopCloser(bytes.NewReader(cp))
		out.ContentLength = int64(len(cp))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(cp)), nil }
	} else {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	m.mirrors.Go(func() {
		defer func() { <-m.mirrorSem }()
		defer cancel()
		ep.Acquire(time.Now())
		defer ep.Release()
		resp, err := t.RoundTrip(out)
		if err != nil {
			m.logger.Debug("mirror failed", "backend", mi.Name, "endpoint", ep.Address, "err", err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
}
