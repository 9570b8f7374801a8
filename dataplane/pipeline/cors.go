package pipeline

import (
	"net/http"
	"strings"

	"github.com/infergate/infergate/dataplane/config"
)

// corsRequest is the CORS state of a request whose rule (or backendRef)
// has a CORS filter and whose Origin is allowed.
type corsRequest struct {
	cors   *config.CORS
	origin string
}

// handleCORS applies a CORS filter to r. A preflight (OPTIONS with Origin
// and Access-Control-Request-Method) is answered here with 204 — with the
// Access-Control-* headers when its origin is allowed, without them when
// not (the browser then refuses the actual request) — and done is true.
// For any other request from an allowed origin the response headers are set
// on w now (answers the proxy writes itself carry them too) and returned to
// be set again when the upstream response commits, over any the backend
// sent.
func handleCORS(w http.ResponseWriter, r *http.Request, cors *config.CORS) (cr corsRequest, done bool) {
	origin := r.Header["Origin"]
	if len(origin) == 0 || origin[0] == "" {
		return cr, false
	}
	allowed := cors.Allows(origin[0])
	if method := r.Header["Access-Control-Request-Method"]; r.Method == http.MethodOptions && len(method) > 0 {
		if allowed {
			cors.Preflight(w.Header(), origin[0], method[0], strings.Join(r.Header["Access-Control-Request-Headers"], ", "))
		}
		w.WriteHeader(http.StatusNoContent)
		return cr, true
	}
	if !allowed {
		return cr, false
	}
	cors.Actual(w.Header(), origin[0])
	return corsRequest{cors: cors, origin: origin[0]}, false
}
