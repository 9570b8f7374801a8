package translate

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const (
	gatewayGroup = gwv1.GroupName // "gateway.networking.k8s.io"
	kindGateway  = "Gateway"
	kindHTTP     = "HTTPRoute"
)

// gatewayState is the work-in-progress translation of one Gateway.
type gatewayState struct {
	gw        *gwv1.Gateway
	name      string           // "<ns>/<name>"
	listeners []*listenerState // the Gateway's own
	// sets are the ListenerSets naming the Gateway as parent, in
	// precedence order (oldest first); setsByKey by "<ns>/<name>".
	sets      []*listenerSetState
	setsByKey map[string]*listenerSetState
	// clientCert is what proxies present to TLS backends asking for a
	// client certificate (spec.tls.backend); resolvedRefs the Gateway's
	// ResolvedRefs condition, set when spec.tls.backend names one.
	clientCert   *snapshotv1.Certificate
	resolvedRefs *metav1.Condition

	routes    []*snapshotv1.Route
	backends  map[string]*snapshotv1.Backend
	endpoints map[string]*snapshotv1.Endpoints
	// endpointSources say how each Endpoints resource was listed, so a
	// change of Pods or EndpointSlices alone lists them again
	// (refreshEndpoints) without translating the gateway.
	endpointSources map[string]endpointSource
	// pools maps a pool identity (see poolID) to its Backend name, for the
	// pools this gateway's routes reference.
	pools map[string]string
	// poolAccepted records, per pool identity, whether any route of this
	// gateway that references the pool is accepted.
	poolAccepted map[string]bool
}

// listenerState is one listener, of the Gateway or of a ListenerSet
// attached to it, with its validation result.
type listenerState struct {
	spec     *gwv1.Listener
	name     string // resource name "<gw>/<section>", "<gw>/<set-ns>/<set>/<section>"
	hostname string
	// ns, kind and gen are those of the object defining the listener: ns
	// is what allowedRoutes "Same" means and where certificateRefs are
	// resolved from (ReferenceGrants name kind), gen the conditions'
	// observedGeneration.
	ns    string
	kind  string
	gen   int64
	owner string // "<kind> <ns>/<name>" for messages

	accepted       metav1.Condition
	conflicted     metav1.Condition
	resolved       metav1.Condition
	supportedKinds []gwv1.RouteGroupKind
	allowsHTTP     bool
	nsSelector     labels.Selector // nil unless From=Selector and valid

	certs []*snapshotv1.Certificate
	// clientValidation is set when the listener checks client certificates.
	clientValidation *snapshotv1.ClientValidation
	attached         map[string]bool // route keys
}

// programmed reports whether the listener is served (emitted as a resource).
func (l *listenerState) programmed() bool {
	return l.accepted.Status == metav1.ConditionTrue &&
		l.conflicted.Status == metav1.ConditionFalse && l.allowsHTTP &&
		(l.resolved.Status == metav1.ConditionTrue || l.resolved.Reason == string(gwv1.ListenerReasonInvalidRouteKinds))
}

// lostConflict reports whether the listener lost a conflict to an earlier
// one (markLaterConflict): it is then neither accepted nor there for
// routes.
func (l *listenerState) lostConflict() bool {
	return l.conflicted.Status == metav1.ConditionTrue && l.accepted.Status == metav1.ConditionFalse
}

func (t *translator) translateGateway(gw *gwv1.Gateway) *gatewayFragment {
	t.frag = newFragment()
	t.reading = t.frag.reads
	defer func() { t.frag, t.reading = nil, nil }()
	gs := &gatewayState{
		gw:           gw,
		name:         key(&gw.ObjectMeta),
		backends:     map[string]*snapshotv1.Backend{},
		endpoints:    map[string]*snapshotv1.Endpoints{},
		pools:        map[string]string{},
		poolAccepted: map[string]bool{},

		endpointSources: map[string]endpointSource{},
	}
	t.read(gw.Namespace)
	t.buildListeners(gs)
	t.mergeListenerSets(gs)
	t.backendClientCert(gs)
	for _, r := range t.routesFor(gs) {
		t.attachRoute(gs, r)
	}
	t.poolStatuses(gs)
	rules := t.modelRules(gs)

	res := &GatewayResources{Gateway: gs.name, Routes: gs.routes, ModelRules: rules}
	for _, l := range gs.allListeners() {
		if l.programmed() {
			res.Listeners = append(res.Listeners, &snapshotv1.Listener{
				Name:             l.name,
				Gateway:          gs.name,
				SectionName:      string(l.spec.Name),
				Port:             uint32(l.spec.Port),
				Protocol:         listenerProtocol(l.spec.Protocol),
				Hostname:         l.hostname,
				Certificates:     l.certs,
				ClientValidation: l.clientValidation,
			})
		}
	}
	for _, b := range gs.backends {
		res.Backends = append(res.Backends, b)
	}
	for _, e := range gs.endpoints {
		res.Endpoints = append(res.Endpoints, e)
	}
	sortByName(res.Listeners)
	sortByName(res.Routes)
	sortByName(res.Backends)
	sortByName(res.Endpoints)
	sortByName(res.ModelRules)
	if _, msg := refusal(gw); msg != "" {
		// Not accepted: no proxy is provisioned for it, and a proxy run by
		// hand for it must not serve it either. Its status still says why.
		res = &GatewayResources{Gateway: gs.name}
	}
	t.frag.res = res
	t.frag.endpointSources = gs.endpointSources
	t.frag.status = gatewayStatus(gs)
	t.listenerSetStatuses(gs)
	for id := range gs.pools {
		t.frag.pools = append(t.frag.pools, id)
	}
	sort.Strings(t.frag.pools)
	return t.frag
}

// allListeners are the Gateway's own listeners, then those of its
// ListenerSets in precedence order.
func (gs *gatewayState) allListeners() []*listenerState {
	out := gs.listeners
	for _, s := range gs.sets {
		out = append(out[:len(out):len(out)], s.listeners...)
	}
	return out
}

func sortByName[T interface{ GetName() string }](s []T) {
	sort.Slice(s, func(i, j int) bool { return s[i].GetName() < s[j].GetName() })
}

func listenerProtocol(p gwv1.ProtocolType) snapshotv1.Listener_Protocol {
	switch p {
	case gwv1.HTTPProtocolType:
		return snapshotv1.Listener_HTTP
	case gwv1.HTTPSProtocolType:
		return snapshotv1.Listener_HTTPS
	}
	return snapshotv1.Listener_PROTOCOL_UNSPECIFIED
}

// buildListeners validates every listener of the gateway: protocol, conflicts
// on a shared port, certificates and allowed route kinds.
func (t *translator) buildListeners(gs *gatewayState) {
	for i := range gs.gw.Spec.Listeners {
		spec := &gs.gw.Spec.Listeners[i]
		gs.listeners = append(gs.listeners, t.newListener(gs, spec, gs.name+"/"+string(spec.Name), &gs.gw.ObjectMeta, kindGateway))
	}
	markConflicts(gs)
}

// newListener validates one listener defined by the object meta (of kind
// kind): everything but conflicts with other listeners.
func (t *translator) newListener(gs *gatewayState, spec *gwv1.Listener, name string, owner *metav1.ObjectMeta, kind string) *listenerState {
	gen := owner.Generation
	l := &listenerState{
		spec:     spec,
		name:     name,
		ns:       owner.Namespace,
		kind:     kind,
		gen:      gen,
		owner:    kind + " " + key(owner),
		attached: map[string]bool{},
	}
	if spec.Hostname != nil {
		l.hostname = strings.ToLower(string(*spec.Hostname))
	}
	l.accepted = cond(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "", gen)
	l.conflicted = cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", gen)
	l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "", gen)
	switch {
	case spec.Port < 1 || spec.Port > 65535:
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonPortUnavailable),
			fmt.Sprintf("port %d is out of range 1-65535", spec.Port), gen)
	case spec.Protocol == gwv1.HTTPProtocolType:
	case spec.Protocol == gwv1.HTTPSProtocolType:
		t.listenerCerts(l)
		t.listenerClientValidation(gs, l)
	default:
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonUnsupportedProtocol),
			fmt.Sprintf("protocol %q is not supported; use HTTP or HTTPS", spec.Protocol), gen)
	}
	t.listenerKinds(l)
	t.listenerNamespaces(l)
	return l
}

// markConflicts applies the spec's listener conflict rules: listeners sharing
// a port must share a protocol and have distinct hostnames.
func markConflicts(gs *gatewayState) {
	byPort := map[int32][]*listenerState{}
	for _, l := range gs.listeners {
		if l.accepted.Status == metav1.ConditionTrue {
			byPort[l.spec.Port] = append(byPort[l.spec.Port], l)
		}
	}
	gen := gs.gw.Generation
	for _, ls := range byPort {
		protocols := map[gwv1.ProtocolType]bool{}
		for _, l := range ls {
			protocols[l.spec.Protocol] = true
		}
		if len(protocols) > 1 {
			for _, l := range ls {
				l.conflicted = cond(string(gwv1.ListenerConditionConflicted), true, string(gwv1.ListenerReasonProtocolConflict),
					fmt.Sprintf("port %d is used with several protocols", l.spec.Port), gen)
			}
			continue
		}
		hosts := map[string]int{}
		for _, l := range ls {
			hosts[l.hostname]++
		}
		for _, l := range ls {
			if hosts[l.hostname] > 1 {
				l.conflicted = cond(string(gwv1.ListenerConditionConflicted), true, string(gwv1.ListenerReasonHostnameConflict),
					fmt.Sprintf("another listener on port %d has hostname %q", l.spec.Port, l.hostname), gen)
			}
		}
	}
}

// listenerCerts resolves an HTTPS listener's certificate Secrets. Any bad
// reference marks ResolvedRefs False; the listener is served only when all
// references resolve.
func (t *translator) listenerCerts(l *listenerState) {
	gen := l.gen
	fail := func(reason gwv1.ListenerConditionReason, msg string) {
		if l.resolved.Status == metav1.ConditionTrue {
			l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), false, string(reason), msg, gen)
		}
	}
	cfg := l.spec.TLS
	if cfg != nil && cfg.Mode != nil && *cfg.Mode != gwv1.TLSModeTerminate {
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonUnsupportedValue),
			fmt.Sprintf("TLS mode %q is not supported on HTTPS listeners", *cfg.Mode), gen)
		return
	}
	if cfg == nil || len(cfg.CertificateRefs) == 0 {
		fail(gwv1.ListenerReasonInvalidCertificateRef, "HTTPS listener has no certificateRefs")
		return
	}
	for _, ref := range cfg.CertificateRefs {
		cert, notPermitted, msg := t.secretCert(ref, l.kind, l.ns)
		switch {
		case notPermitted:
			fail(gwv1.ListenerReasonRefNotPermitted, msg)
		case cert == nil:
			fail(gwv1.ListenerReasonInvalidCertificateRef, msg)
		default:
			l.certs = append(l.certs, cert)
		}
	}
}

// listenerKinds computes supportedKinds; HTTPRoute is the only kind we serve.
func (t *translator) listenerKinds(l *listenerState) {
	httpRoute := gwv1.RouteGroupKind{Group: ptr(gwv1.Group(gatewayGroup)), Kind: kindHTTP}
	if p := l.spec.Protocol; p != gwv1.HTTPProtocolType && p != gwv1.HTTPSProtocolType {
		l.supportedKinds = []gwv1.RouteGroupKind{}
		return
	}
	if l.spec.AllowedRoutes == nil || len(l.spec.AllowedRoutes.Kinds) == 0 {
		l.supportedKinds = []gwv1.RouteGroupKind{httpRoute}
		l.allowsHTTP = true
		return
	}
	var bad []string
	for _, k := range l.spec.AllowedRoutes.Kinds {
		group := gatewayGroup
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group == gatewayGroup && k.Kind == kindHTTP {
			if !l.allowsHTTP {
				l.supportedKinds = append(l.supportedKinds, httpRoute)
			}
			l.allowsHTTP = true
			continue
		}
		bad = append(bad, group+"/"+string(k.Kind))
	}
	if l.supportedKinds == nil {
		// Explicitly empty, not omitted: the status must say "none".
		l.supportedKinds = []gwv1.RouteGroupKind{}
	}
	if len(bad) > 0 {
		l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), false, string(gwv1.ListenerReasonInvalidRouteKinds),
			"unsupported route kinds: "+strings.Join(bad, ", "), l.gen)
	}
}

func (t *translator) listenerNamespaces(l *listenerState) {
	ar := l.spec.AllowedRoutes
	if ar == nil || ar.Namespaces == nil || ar.Namespaces.From == nil || *ar.Namespaces.From != gwv1.NamespacesFromSelector {
		return
	}
	if ar.Namespaces.Selector == nil {
		l.nsSelector = labels.Nothing()
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(ar.Namespaces.Selector)
	if err != nil {
		l.nsSelector = labels.Nothing()
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonUnsupportedValue),
			"invalid allowedRoutes.namespaces.selector: "+err.Error(), l.gen)
		return
	}
	l.nsSelector = sel
}

// allowsNamespace applies allowedRoutes.namespaces (default Same: the
// namespace of the Gateway or ListenerSet defining the listener).
func (t *translator) allowsNamespace(l *listenerState, ns string) bool {
	from := gwv1.NamespacesFromSame
	if ar := l.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil {
		from = *ar.Namespaces.From
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == l.ns
	case gwv1.NamespacesFromSelector:
		n := t.namespaces[ns]
		if n == nil || l.nsSelector == nil {
			return false
		}
		return l.nsSelector.Matches(labels.Set(n.Labels))
	}
	return false
}

// conditions are the listener's status conditions. One not served is
// Programmed=False for the reason it lost a conflict (a ListenerSet
// listener that came later), else Invalid.
func (l *listenerState) conditions() []metav1.Condition {
	p := cond(string(gwv1.ListenerConditionProgrammed), true, string(gwv1.ListenerReasonProgrammed), "", l.gen)
	switch {
	case l.programmed():
	case l.lostConflict():
		p = cond(string(gwv1.ListenerConditionProgrammed), false, l.conflicted.Reason, l.conflicted.Message, l.gen)
	default:
		p = cond(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), "listener is not valid; see other conditions", l.gen)
	}
	return []metav1.Condition{l.accepted, l.conflicted, p, l.resolved}
}

// status is the listener's status entry. A ListenerSet's entries have the
// same fields (gwv1.ListenerEntryStatus converts from it).
func (l *listenerState) status() gwv1.ListenerStatus {
	return gwv1.ListenerStatus{
		Name:           l.spec.Name,
		SupportedKinds: l.supportedKinds,
		AttachedRoutes: int32(len(l.attached)),
		Conditions:     l.conditions(),
	}
}

func gatewayStatus(gs *gatewayState) gwv1.GatewayStatus {
	gen := gs.gw.Generation
	var st gwv1.GatewayStatus
	programmed, invalid := 0, 0
	for _, l := range gs.listeners {
		if l.programmed() {
			programmed++
		} else {
			invalid++
		}
		st.Listeners = append(st.Listeners, l.status())
	}
	if gs.resolvedRefs != nil {
		st.Conditions = append(st.Conditions, *gs.resolvedRefs)
	}
	if reason, msg := refusal(gs.gw); msg != "" {
		// The provisioner runs no proxies for it either.
		st.Conditions = append(st.Conditions,
			cond(string(gwv1.GatewayConditionAccepted), false, string(reason), msg, gen),
			cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), msg, gen))
		return st
	}
	switch {
	case invalid == 0:
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), "", gen))
	case programmed > 0:
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonListenersNotValid),
			fmt.Sprintf("%d of %d listeners are not valid", invalid, len(gs.listeners)), gen))
	default:
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonListenersNotValid),
			"no listener is valid", gen))
	}
	notUsable := addressNotUsable(gs.gw)
	switch {
	case programmed > 0 && notUsable != "":
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonAddressNotUsable), notUsable, gen))
	case programmed > 0:
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "", gen))
	default:
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), "no listener can be served", gen))
	}
	if insecureFrontendValidation(gs.gw) {
		st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionInsecureFrontendValidationMode), true,
			string(gwv1.GatewayReasonConfigurationChanged),
			"spec.tls.frontend uses AllowInsecureFallback: clients without a valid certificate are accepted", gen))
	}
	return st
}

// refusal says why the Gateway's own spec (not its listeners) keeps it
// from being Accepted, with the condition reason; "" when nothing does.
func refusal(gw *gwv1.Gateway) (gwv1.GatewayConditionReason, string) {
	if msg := InvalidParameters(gw); msg != "" {
		return gwv1.GatewayReasonInvalidParameters, msg
	}
	if msg := UnsupportedAddress(gw); msg != "" {
		return gwv1.GatewayReasonUnsupportedAddress, msg
	}
	return "", ""
}

// InvalidParameters says why the Gateway's spec.infrastructure.parametersRef
// cannot be used, or "" when it can (or is unset): only a core ConfigMap
// in the Gateway's namespace holds proxy parameters. The provisioner
// applies the same rule (it provisions nothing for such a Gateway).
func InvalidParameters(gw *gwv1.Gateway) string {
	if gw.Spec.Infrastructure == nil || gw.Spec.Infrastructure.ParametersRef == nil {
		return ""
	}
	if r := gw.Spec.Infrastructure.ParametersRef; r.Group != "" || r.Kind != "ConfigMap" {
		return fmt.Sprintf("infrastructure.parametersRef: %s/%s %q is not supported; only a core ConfigMap", r.Group, r.Kind, r.Name)
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
