package translate

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// attachRoute attaches one HTTPRoute to one gateway: it writes a parent
// status for every parentRef naming the gateway and, when at least one is
// accepted, emits the route's rules as Route resources.
func (t *translator) attachRoute(gs *gatewayState, r *gwv1.HTTPRoute) {
	rk := key(&r.ObjectMeta)
	var parents []gwv1.RouteParentStatus
	attached := map[*listenerState]bool{}
	accepted := false
	refs := t.routeRefs(r)
	for _, pr := range r.Spec.ParentRefs {
		candidates, c, ok := gs.parentListeners(pr, r)
		if !ok {
			continue
		}
		if c.Type == "" {
			c = t.attachParent(candidates, r, pr, attached)
		}
		if c.Status == metav1.ConditionTrue && refs.unsupported != "" {
			c = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), refs.unsupported, r.Generation)
		}
		if c.Status == metav1.ConditionTrue {
			accepted = true
		}
		parents = append(parents, gwv1.RouteParentStatus{
			ParentRef:      pr,
			ControllerName: gwv1.GatewayController(t.opts.ControllerName),
			Conditions:     []metav1.Condition{c, refs.resolvedCondition(r.Generation)},
		})
	}
	if len(parents) == 0 {
		return
	}
	// The route and what it references are this gateway's inputs now.
	t.read(r.Namespace)
	for ns := range refs.reads {
		t.read(ns)
	}
	t.frag.routeParents[rk] = append(t.frag.routeParents[rk], parents...)

	for _, id := range refs.pools {
		gs.poolAccepted[id] = gs.poolAccepted[id] || accepted
	}
	if !accepted || refs.unsupported != "" {
		return
	}
	var listeners []string
	var hosts []string
	anyHost := false
	for l := range attached {
		l.attached[rk] = true
		if !l.programmed() {
			continue
		}
		listeners = append(listeners, l.name)
		h, all, _ := intersectHostnames(l.hostname, r.Spec.Hostnames)
		anyHost = anyHost || all
		hosts = append(hosts, h...)
	}
	if len(listeners) == 0 {
		return
	}
	sort.Strings(listeners)
	if anyHost {
		// One listener accepts every host the route names; the proxy checks
		// the listener hostname itself, so no route-level restriction is
		// needed on the others either.
		hosts = nil
	} else {
		hosts = dedupe(hosts)
	}
	for i := range r.Spec.Rules {
		gs.routes = append(gs.routes, t.buildRoute(gs, r, i, listeners, hosts))
	}
}

// refersTo reports whether a parentRef of a route in routeNS names gw.
func refersTo(pr gwv1.ParentReference, routeNS string, gw *gwv1.Gateway) bool {
	return refersToKind(pr, kindGateway) && parentNamespace(pr, routeNS) == gw.Namespace && string(pr.Name) == gw.Name
}

// refersToKind reports whether a parentRef names an object of the Gateway
// API group and the given kind (Gateway when kind and group are unset).
func refersToKind(pr gwv1.ParentReference, kind string) bool {
	if pr.Group != nil && string(*pr.Group) != gatewayGroup {
		return false
	}
	if pr.Kind == nil {
		return kind == kindGateway
	}
	return string(*pr.Kind) == kind
}

// parentNamespace is the namespace a parentRef of a route in routeNS names.
func parentNamespace(pr gwv1.ParentReference, routeNS string) string {
	if pr.Namespace != nil && *pr.Namespace != "" {
		return string(*pr.Namespace)
	}
	return routeNS
}

// parentListeners resolves a parentRef of r against the gateway: the
// listeners it may attach to (a Gateway parentRef: the Gateway's own; a
// ListenerSet parentRef: that set's), or a ready Accepted=False condition
// (the Gateway is not accepted, or the set is not attached to it). ok is false when the parentRef
// names neither the gateway nor one of its ListenerSets.
func (gs *gatewayState) parentListeners(pr gwv1.ParentReference, r *gwv1.HTTPRoute) (ls []*listenerState, c metav1.Condition, ok bool) {
	if refersTo(pr, r.Namespace, gs.gw) {
		if _, msg := refusal(gs.gw); msg != "" {
			// It serves nothing (its snapshot is empty), so a route
			// reporting Accepted there would claim traffic it never gets.
			return nil, cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent),
				"Gateway "+gs.name+" is not accepted: "+msg, r.Generation), true
		}
		return gs.listeners, c, true
	}
	s := gs.setsByKey[setParentKey(pr, r.Namespace)]
	if s == nil {
		return nil, c, false
	}
	if !s.allowed() {
		return nil, cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent),
			"ListenerSet "+s.key+" is not accepted by Gateway "+gs.name, r.Generation), true
	}
	return s.listeners, c, true
}

// attachParent evaluates one parentRef against the listeners it names, in
// the order the spec's reasons imply: a matching listener must exist, allow
// the route, and share a hostname with it.
func (t *translator) attachParent(candidates []*listenerState, r *gwv1.HTTPRoute, pr gwv1.ParentReference, attached map[*listenerState]bool) metav1.Condition {
	gen := r.Generation
	var matching []*listenerState
	for _, l := range candidates {
		if pr.SectionName != nil && *pr.SectionName != l.spec.Name {
			continue
		}
		if pr.Port != nil && *pr.Port != l.spec.Port {
			continue
		}
		matching = append(matching, l)
	}
	if len(matching) == 0 {
		return cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent),
			"no listener matches the parentRef's sectionName/port", gen)
	}
	var allowed []*listenerState
	for _, l := range matching {
		if l.allowsHTTP && !l.lostConflict() && t.allowsNamespace(l, r.Namespace) {
			allowed = append(allowed, l)
		}
	}
	if len(allowed) == 0 {
		return cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNotAllowedByListeners),
			fmt.Sprintf("no listener allows HTTPRoutes from namespace %q", r.Namespace), gen)
	}
	n := 0
	for _, l := range allowed {
		if _, _, ok := intersectHostnames(l.hostname, r.Spec.Hostnames); ok {
			attached[l] = true
			n++
		}
	}
	if n == 0 {
		return cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingListenerHostname),
			"no listener hostname intersects the route's hostnames", gen)
	}
	return cond(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "", gen)
}

// intersectHostnames returns the route hostnames a listener with hostname
// listener accepts, narrowed to the more specific side of each pair. all is
// true when neither side restricts the host; ok is false when nothing
// intersects.
func intersectHostnames(listener string, route []gwv1.Hostname) (hosts []string, all, ok bool) {
	if len(route) == 0 {
		if listener == "" {
			return nil, true, true
		}
		return []string{listener}, false, true
	}
	for _, rh := range route {
		h := strings.ToLower(string(rh))
		switch {
		case listener == "" || hostMatches(listener, h):
			hosts = append(hosts, h)
		case hostMatches(h, listener):
			hosts = append(hosts, listener)
		}
	}
	return hosts, false, len(hosts) > 0
}

// hostMatches reports whether pattern (possibly "*.suffix") covers host,
// itself possibly a wildcard. A wildcard covers one or more labels.
func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	if !strings.HasPrefix(pattern, "*.") {
		return false
	}
	suffix := pattern[1:] // ".example.com"
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix) && host != pattern
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
