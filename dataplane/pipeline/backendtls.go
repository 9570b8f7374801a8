package pipeline

import (
	"log/slog"
	"net/http"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/upstream"
)

// unusableTLS answers requests to endpoint ep of a backend whose
// BackendTLSPolicy has no usable CA certificate: 503, never a connection
// that could not be verified (or one in plain text the backend does not
// expect). Like every 5xx the proxy writes, it names the endpoint and is
// logged.
func unusableTLS(b *config.Backend, ep *endpoints.Endpoint, log *slog.Logger) http.Handler {
	msg := "backend " + b.Source + " cannot be reached: its BackendTLSPolicy is invalid: " + b.TLS.Invalid
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Warn("upstream request failed", "request_id", upstream.RequestID(r), "status", http.StatusServiceUnavailable,
			"backend", b.Source, "endpoint", ep.Address, "cause", "BackendTLSPolicy invalid: "+b.TLS.Invalid)
		w.Header()[upstream.ServedHeader] = ep.ServedHeader()
		openai.WriteError(w, http.StatusServiceUnavailable, openai.TypeServer, "backend_tls_invalid", msg)
	})
}
