package tracing

// Span names. A proxy's request span is named "{method} {path}" for the
// OpenAI endpoints and "{method}" otherwise (low cardinality); its children:
const (
	SpanReadBody = "read body"
	SpanRoute    = "match route"
	SpanQueue    = "queue wait"
	SpanPick     = "pick endpoint"
	SpanAttempt  = "upstream attempt"
)

// Control-plane span names: one trace per translation, with the snapshot
// pushes it causes and every proxy's delivery (response to ACK or NACK).
const (
	SpanTranslation = "translation"
	SpanTranslate   = "translate"
	SpanBuild       = "build snapshots"
	SpanPush        = "push snapshot"
	SpanDeliver     = "xds delivery"
)

// Attribute keys of infergate's own span attributes. Standard keys (HTTP,
// GenAI semantic conventions) come from go.opentelemetry.io/otel/semconv.
const (
	AttrRequestID   = "infergate.request_id"
	AttrGateway     = "infergate.gateway"
	AttrRoute       = "infergate.route"
	AttrBackend     = "infergate.backend"
	AttrTargetModel = "infergate.target_model"
	AttrPriority    = "infergate.priority"
	AttrQueued      = "infergate.queue.admitted"
	// Pick: the candidates considered, the endpoint chosen and why.
	AttrCandidates = "infergate.pick.candidates"
	AttrEndpoint   = "infergate.endpoint"
	AttrPickError  = "infergate.pick.error"
	// The cost model's estimates for the request and the chosen
	// endpoint's total cost and cached prefix (tokens); each candidate's
	// inputs and terms are an EventCandidate event on the pick span.
	AttrPromptTokens = "infergate.pick.prompt_tokens"
	AttrOutputTokens = "infergate.pick.output_tokens"
	AttrCost         = "infergate.pick.cost"
	AttrCachedTokens = "infergate.pick.cached_tokens"
	// Upstream attempts: the attempt's number (1 = first) and, on a
	// retry, what the previous attempt failed with.
	AttrAttempt     = "infergate.attempt"
	AttrRetryReason = "infergate.retry_reason"
	// Control plane.
	AttrVersion   = "infergate.snapshot.version"
	AttrResources = "infergate.snapshot.resources"
	AttrGateways  = "infergate.gateways"
	AttrNode      = "infergate.node"
	AttrTypeURL   = "infergate.xds.type_url"
	AttrRemoved   = "infergate.xds.removed"
	AttrNack      = "infergate.xds.nack_reason"
)

// EventCandidate is an event on a pick span per candidate the cost model
// priced (the cheapest MaxCandidateEvents, the chosen one always among
// them): the endpoint, whether it was chosen, its inputs (waiting,
// running, kv_usage, cached_tokens, fresh, home) and its cost terms in
// seconds (wait, prefill, decode, harm, lora, displace, cost).
const EventCandidate = "candidate"

// MaxCandidateEvents bounds the candidate events of one pick span (an
// SDK keeps 128 events per span by default).
const MaxCandidateEvents = 32
