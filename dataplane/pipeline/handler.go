package pipeline

import (
	"errors"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/dataplane/upstream"
)

// Request headers the gateway reads (canonical form).
const (
	modelHeader     = "X-Gateway-Model-Name"
	objectiveHeader = "X-Gateway-Inference-Objective"
)

// portHandler serves one bound port with whatever config is current.
type portHandler struct {
	m    *Pipeline
	port uint32
}

// ServeHTTP is the request path: body model → route → weighted backend →
// model rule → picker → upstream.
func (h *portHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	reqID := upstream.EnsureRequestID(w, r)
	var rt *requestTrace
	if rt, w = m.startTrace(w, r, reqID); rt != nil {
		defer rt.end()
	}
	st := m.state.Load()
	ps := st.ports[h.port]
	if ps == nil {
		// The port is draining after its listener was removed.
		notFound(w, r, "no listener on this port")
		return
	}

	if misdirected(ps, r) {
		openai.WriteError(w, http.StatusMisdirectedRequest, openai.TypeInvalidRequest, "misdirected_request",
			"host "+r.Host+" is not served by the listener TLS server name "+r.TLS.ServerName+" selected")
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/v1/models" {
		m.serveModels(w, r, st, ps)
		return
	}

	var (
		body      *openai.Body
		model     openai.ModelField
		hasModel  bool
		api       openai.Endpoint
		invalid   error
		maxTokens int64
	)
	if r.Method == http.MethodPost {
		api = openai.EndpointOf(r.URL.Path)
	}
	if wantsBody(r) {
		var err error
		// Bound the body read on its own: a client trickling its body
		// (slowloris) must not hold a connection for ever.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(m.opts.BodyReadTimeout))
		t0 := rt.now()
		body, err = openai.ReadBodyWithin(r.Body, r.ContentLength, m.opts.MaxBodyBytes, m.budget)
		rt.bodyRead(t0, body, err)
		if err == nil {
			_ = rc.SetReadDeadline(time.Time{})
		}
		// On failure the deadline stays: net/http drains an unread body
		// after the handler, and must not wait for the slow client again.
		if upstream.IsTimeout(err) {
			w.Header().Set("Connection", "close")
			m.logger.Debug("request body read timed out", "request_id", reqID, "timeout", m.opts.BodyReadTimeout)
			openai.WriteError(w, http.StatusRequestTimeout, openai.TypeInvalidRequest, "request_timeout",
				"the request body was not received within "+m.opts.BodyReadTimeout.String())
			return
		}
		if errors.Is(err, openai.ErrBudget) {
			// The request is fine; the proxy has too much buffered right
			// now. The client may retry, here or on another replica.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "1")
			m.logger.Warn("request body refused: buffered body budget spent", "request_id", reqID, "status", http.StatusServiceUnavailable,
				"endpoint", "", "cause", err.Error(), "budget", m.budget.Limit(), "content_length", r.ContentLength)
			openai.WriteError(w, http.StatusServiceUnavailable, openai.TypeServer, "body_budget_exceeded",
				"the gateway is buffering too many request bodies right now; retry shortly")
			return
		}
		if errors.Is(err, openai.ErrTooLarge) {
			openai.WriteError(w, http.StatusRequestEntityTooLarge, openai.TypeInvalidRequest, "request_too_large",
				"request body exceeds the gateway limit")
			return
		}
		if err != nil {
			openai.WriteError(w, http.StatusBadRequest, openai.TypeInvalidRequest, "bad_request_body", "reading request body: "+err.Error())
			return
		}
		defer body.Close()
		r.Body = body
		// The body is in hand: forward it with a fixed length, and do not
		// make the upstream transport wait for a 100 Continue the client
		// already got from us.
		r.ContentLength = int64(body.Len())
		r.TransferEncoding = nil
		delete(r.Header, "Expect")
		// A body that is not JSON is forwarded as is: the server behind a
		// route decides what it accepts. One scan finds the model and
		// checks the OpenAI request shape (enforced for pools only).
		sc := openai.ScanBody(api, body.Bytes())
		model, hasModel, invalid = sc.Model, sc.HasModel, sc.Invalid
		maxTokens = sc.MaxTokens
		if hasModel {
			// Exposed before matching so HTTPRoute header matches can send
			// each model to its own backend — so it must be a value a
			// header can carry: a CR or LF (escaped in the JSON) is the
			// client's error, not a reason to fail at the endpoint.
			if !httpguts.ValidHeaderFieldValue(model.Name) {
				openai.WriteError(w, http.StatusBadRequest, openai.TypeInvalidRequest, "invalid_model",
					"the model name contains characters that cannot be forwarded (control characters such as CR or LF)")
				return
			}
			r.Header[modelHeader] = []string{model.Name}
		}
	}

	t0 := rt.now()
	route, match := ps.router.Match(r)
	rt.routed(t0, route, model.Name, api)
	if route == nil {
		notFound(w, r, "no route for "+r.Host+r.URL.Path)
		return
	}
	var cors corsRequest
	if route.Filters.CORS != nil {
		var done bool
		if cors, done = handleCORS(w, r, route.Filters.CORS); done {
			return
		}
	}
	if red := route.Filters.Redirect; red != nil {
		redirect(w, r, red, match)
		return
	}
	if route.TotalWeight == 0 {
		m.logger.Warn("route has no backend with weight", "request_id", reqID, "status", http.StatusInternalServerError,
			"route", route.Name, "endpoint", "", "cause", "every backendRef has weight 0")
		openai.WriteError(w, http.StatusInternalServerError, openai.TypeServer, "no_backend",
			"route "+route.Route+" has no backend with weight")
		return
	}
	ref := route.PickBackend(rand.Uint64N(route.TotalWeight))
	if ref.Backend == nil {
		m.logger.Warn("invalid backend reference", "request_id", reqID, "status", http.StatusInternalServerError,
			"route", route.Name, "endpoint", "", "cause", ref.InvalidReason)
		openai.WriteError(w, http.StatusInternalServerError, openai.TypeServer, "invalid_backend_ref",
			"route "+route.Route+" refers to an invalid backend")
		return
	}
	if route.Filters.CORS == nil && ref.Filters.CORS != nil {
		// A backendRef's CORS filter applies when its rule has none.
		var done bool
		if cors, done = handleCORS(w, r, ref.Filters.CORS); done {
			return
		}
	}
	if red := ref.Filters.Redirect; red != nil {
		redirect(w, r, red, match)
		return
	}
	bs := st.backends[ref.Name]
	// Model servers get only requests of the shape their API takes;
	// anything else is answered here, cheaply, with an OpenAI error. (api
	// is Unknown, and invalid nil, for all but POSTs.)
	if api != openai.Unknown && body == nil {
		invalid = openai.Validate(api, nil)
	}
	if bs.cfg.IsPool() && invalid != nil {
		m.metrics.Error(model.Name, model.Name, http.StatusBadRequest)
		m.metrics.Route(route.Route, bs.cfg.Source).Count(http.StatusBadRequest, false)
		openai.WriteError(w, http.StatusBadRequest, openai.TypeInvalidRequest, "invalid_request", invalid.Error())
		return
	}

	objective := objectiveOf(r) // as the client sent it, before the rule's filters
	// The rule's filters; the backendRef's are applied per attempt.
	if !route.Filters.Empty() {
		applyRequestFilters(r, &route.Filters, match)
	}
	c := call{st: st, route: route, match: match, r: r, body: body, preq: &picker.Request{MaxTokens: int(maxTokens)},
		model: model, inBody: model, hasModel: hasModel, poolsOK: invalid == nil, objective: objective, cors: cors, trace: rt}
	if d := route.Timeouts.Request; d > 0 {
		// Gateway API's request timeout covers the whole request, time
		// spent waiting in a pool's queue included.
		c.deadline = time.Now().Add(d)
	}
	c.keepBase()
	m.aim(&c, ref, bs)
	rt.target(bs.cfg.Source, c.preq.TargetModel, c.preq.Priority)
	// Wait for room in a saturated pool after the filters (which may set
	// the fairness id) and before mirroring (a refused request is not).
	// A retry that moves to another pool goes straight to its picker.
	if bs.queue != nil {
		t0 := rt.now()
		ok := m.admit(w, &c)
		rt.queued(t0, bs.cfg.Source, c.preq.Priority, ok)
		if !ok {
			return
		}
		defer bs.queue.Kick()
	}
	m.forward(w, &c)
}

// wantsBody reports whether the request body should be buffered to read its
// model: JSON (or untyped, as curl -d sends) bodies of methods that carry
// one. Other bodies (uploads, streams) are forwarded untouched.
func wantsBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return false
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return false
	}
	ct := r.Header["Content-Type"]
	if len(ct) == 0 {
		return true
	}
	switch ct[0] {
	case "", "application/json", "application/x-www-form-urlencoded":
		return true
	}
	mt, _, err := mime.ParseMediaType(ct[0])
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "application/x-www-form-urlencoded"
}

// notFound answers a request no listener or route takes with the OpenAI
// error JSON — except HEAD: its answer has no content, so it gets no
// Content-Type either (a client reading "application/json" would try to
// parse the empty body; gateway-api's conformance suite does).
func notFound(w http.ResponseWriter, r *http.Request, msg string) {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	openai.WriteError(w, http.StatusNotFound, openai.TypeInvalidRequest, "route_not_found", msg)
}

// misdirected reports whether an HTTPS request's Host selects another
// listener than its TLS server name did: the connection was set up (and its
// certificate chosen) for one listener, and an HTTP/2 client may reuse it
// for a host whose certificate also matched — that request must be retried
// on a connection of its own (421, RFC 9110 §15.5.20). No SNI, no check.
func misdirected(ps *portState, r *http.Request) bool {
	if r.TLS == nil || r.TLS.ServerName == "" {
		return false
	}
	return ps.router.Listener(r.TLS.ServerName) != ps.router.Listener(r.Host)
}

// objectiveOf is the request's InferenceObjective header ("" when absent),
// read without canonicalising the name again.
func objectiveOf(r *http.Request) string {
	if obj := r.Header[objectiveHeader]; len(obj) > 0 {
		return obj[0]
	}
	return ""
}
