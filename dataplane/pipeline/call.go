package pipeline

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/extproc"
	"github.com/infergate/infergate/dataplane/openai"
	"github.com/infergate/infergate/dataplane/picker"
)

// call is a client request on its way to its rule's backendRefs. Each
// attempt is aimed at one backendRef: the first at the weighted pick, and
// after a retryable failure the next at another backendRef of the rule
// (weighted, among those no attempt failed at) while one is left, else at
// the same one again. What differs per backendRef — its filters and
// mirrors, a pool's model rule (target rewrite, priority) — is set up by
// aim, so each attempt carries exactly what its backend is configured for.
type call struct {
	st    *state
	route *config.Route
	match *config.Match
	// deadline ends the whole request (the rule's timeouts.request), set
	// before any wait in a pool's queue so the wait counts against it.
	deadline time.Time
	// r is the request attempts send (the rule's filters applied); aim
	// adds the backendRef's.
	r    *http.Request
	body *openai.Body
	preq *picker.Request
	// model is the client's model; inBody the name the body holds now
	// and where its token sits (aim rewrites it per backendRef).
	model, inBody openai.ModelField
	hasModel      bool
	// poolsOK is false when the request does not have the shape a pool's
	// API takes: a retry then never goes to a pool.
	poolsOK bool
	// objective is the X-Gateway-Inference-Objective the client sent.
	objective string
	// cors is set when a CORS filter allowed the request's origin.
	cors corsRequest
	// trace records the request's spans; nil when tracing is off.
	trace *requestTrace

	ref *config.BackendRef
	bs  *backendState
	// base is r before any backendRef's filters, kept when a later attempt
	// may go to another backendRef with filters of its own.
	base *requestBase
	// failed are the backendRefs an attempt failed at; mirrored those
	// whose mirrors have fired.
	failed, mirrored []*config.BackendRef
	rulesMirrored    bool

	// ext is the external endpoint picker's decision for extFor, the
	// backend attempts go to (nil without one); see Manager.external.
	ext    *extproc.Exchange
	extFor *backendState
	// ownBody is set when body was made for a picker's replacement (the
	// client's had none) and is closed with the call.
	ownBody bool
}

type requestBase struct {
	header http.Header
	url    url.URL
	host   string
}

// attempts is how many attempts the request may take: the rule's retry
// attempts when its body can be sent again (a buffered one, or none).
func (c *call) attempts() int {
	if rt := c.route.Retry; rt != nil && (c.body != nil || c.r.Body == nil || c.r.Body == http.NoBody) {
		return rt.Attempts
	}
	return 1
}

// keepBase remembers r as it is before backendRef filters when a retry may
// move to another backendRef and some backendRef has filters. Call it
// before the first aim.
func (c *call) keepBase() {
	if len(c.route.Backends) < 2 || c.attempts() < 2 {
		return
	}
	for _, ref := range c.route.Backends {
		if !ref.Filters.Empty() {
			c.base = &requestBase{header: c.r.Header.Clone(), url: *c.r.URL, host: c.r.Host}
			return
		}
	}
}

// aim readies c for attempts at ref: the backendRef's filters on the
// request (starting again from the rule's when the previous attempt went
// elsewhere), and a pool's model rule on the body and priority.
func (m *Pipeline) aim(c *call, ref *config.BackendRef, bs *backendState) {
	if c.ref != nil && c.base != nil {
		c.r.Header = c.base.header.Clone()
		*c.r.URL = c.base.url
		c.r.Host = c.base.host
	}
	c.ref, c.bs = ref, bs
	preq, target := c.preq, c.model.Name
	preq.Header, preq.Priority = c.r.Header, 0
	if bs.cfg.IsPool() {
		var rule *config.ModelRule
		if c.hasModel {
			rule = bs.cfg.Models[c.model.Name]
		}
		// An objective named by the client decides the priority; the
		// model's own rule is the fallback.
		if obj := bs.cfg.Objectives[c.objective]; c.objective != "" && obj != nil {
			preq.Priority = obj.Priority
		} else if rule != nil {
			preq.Priority = rule.Priority
		}
		if rule != nil && rule.TotalWeight > 0 {
			if t := rule.PickTarget(rand.Uint64N(rule.TotalWeight)); t != "" {
				target = t
			}
		}
	}
	if c.hasModel {
		preq.Model, preq.TargetModel = c.model.Name, target
	}
	if c.hasModel && c.body != nil {
		// The body names the model the previous backendRef wanted (or the
		// client's); put this one's there, the client's for a Service.
		if c.inBody.Name != target {
			c.inBody = c.body.RewriteModel(c.inBody, target)
			c.r.ContentLength = int64(c.body.Len())
		}
	}
	if c.body != nil {
		preq.Body = c.body.Bytes()
	}
	if !ref.Filters.Empty() {
		applyRequestFilters(c.r, &ref.Filters, c.match)
	}
}

// fireMirrors fires the mirrors of the rule and of c's backendRef that have
// not fired yet for this request: a request is mirrored once per
// backendRef it is sent to, and only when it is sent.
func (m *Pipeline) fireMirrors(c *call) {
	if !c.rulesMirrored {
		c.rulesMirrored = true
		m.mirrorAll(c, c.route.Filters.Mirrors)
	}
	if len(c.ref.Filters.Mirrors) > 0 && !slices.Contains(c.mirrored, c.ref) {
		c.mirrored = append(c.mirrored, c.ref)
		m.mirrorAll(c, c.ref.Filters.Mirrors)
	}
}

func (m *Pipeline) mirrorAll(c *call, mirrors []*config.Mirror) {
	for _, mi := range mirrors {
		if mirrorWanted(mi) {
			m.mirror(c.st, mi, c.r, c.preq.Body)
		}
	}
}

// next returns the backendRef for the attempt after one at c.ref failed:
// a weighted pick among the rule's usable backendRefs no attempt failed
// at, or c.ref again when none is left.
func (c *call) next() (*config.BackendRef, *backendState) {
	if !slices.Contains(c.failed, c.ref) {
		c.failed = append(c.failed, c.ref)
	}
	var total uint64
	for _, ref := range c.route.Backends {
		if c.usable(ref) != nil {
			total += uint64(ref.Weight)
		}
	}
	if total == 0 {
		return c.ref, c.bs
	}
	n := rand.Uint64N(total)
	for _, ref := range c.route.Backends {
		bs := c.usable(ref)
		if bs == nil {
			continue
		}
		if n < uint64(ref.Weight) {
			return ref, bs
		}
		n -= uint64(ref.Weight)
	}
	return c.ref, c.bs // unreachable: n < total
}

// usable returns ref's backend if a retry may go there: it takes traffic,
// forwards (no redirect), has endpoints, takes this request's shape and
// has not failed an attempt yet.
func (c *call) usable(ref *config.BackendRef) *backendState {
	if ref.Weight == 0 || ref.Backend == nil || ref.Filters.Redirect != nil || slices.Contains(c.failed, ref) {
		return nil
	}
	bs := c.st.backends[ref.Name]
	if bs == nil || len(bs.eps) == 0 || (!c.poolsOK && bs.cfg.IsPool()) {
		return nil
	}
	return bs
}
