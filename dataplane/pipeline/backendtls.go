package pipeline

import (
	"log/slog"
	"net/http"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/openai"
)

// unusableTLS answers requests to a backend whose BackendTLSPolicy has no
// usable CA certificate: 503, never a connection that could not be
// verified (or one in plain text the backend does not expect).
func unusableTLS(b *config.Backend, log *slog.Logger) http.Handler {
	msg := "backend " + b.Source + " cannot be reached: its BackendTLSPolicy is invalid: " + b.TLS.Invalid
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Debug("backend TLS policy invalid", "backend", b.Name, "reason", b.TLS.Invalid)
		openai.WriteError(w, http.StatusServiceUnavailable, openai.TypeServer, "backend_tls_invalid", msg)
	})
}
