package translate

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const kindListenerSet = "ListenerSet"

// listenerSetState is one ListenerSet naming a Gateway of ours as parent.
type listenerSetState struct {
	ls  *gwv1.ListenerSet
	key string // "<ns>/<name>"
	// refused is why the Gateway does not take the set's listeners
	// (NotAllowed, ParentNotAccepted), "" when it does; msg explains it.
	refused gwv1.ListenerSetConditionReason
	msg     string
	// listeners are the set's, in spec order; empty when refused.
	listeners []*listenerState
}

// allowed reports whether the Gateway takes the set's listeners (routes
// may then attach to those that are valid).
func (s *listenerSetState) allowed() bool { return s.refused == "" }

// mergeListenerSets adds the listeners of every ListenerSet naming gs's
// Gateway as parent, if the Gateway's allowedListeners admits the set's
// namespace. Precedence decides conflicts: the Gateway's own listeners
// first, then the sets oldest first (then by "<ns>/<name>"), within a set
// in spec order; a listener sharing a port with an earlier valid one gets
// Conflicted (ProtocolConflict on another protocol, HostnameConflict on the
// same hostname) and is not served, while the earlier one is left alone.
func (t *translator) mergeListenerSets(gs *gatewayState) {
	gs.setsByKey = map[string]*listenerSetState{}
	// Why the Gateway itself is not accepted, "" when it is: then no set
	// is taken.
	notAccepted := ""
	if _, msg := refusal(gs.gw); msg != "" {
		notAccepted = "Gateway " + gs.name + " is not accepted: " + msg
	} else if !slices.ContainsFunc(gs.listeners, (*listenerState).programmed) {
		// The Gateway is not Accepted either (ListenersNotValid).
		notAccepted = "Gateway " + gs.name + " is not accepted: none of its own listeners is valid"
	}
	for _, ls := range t.listenerSets {
		if !setParentIs(ls, gs.gw) {
			continue
		}
		s := &listenerSetState{ls: ls, key: key(&ls.ObjectMeta)}
		t.read(ls.Namespace)
		gs.sets = append(gs.sets, s)
		gs.setsByKey[s.key] = s
		if notAccepted != "" {
			s.refused, s.msg = gwv1.ListenerSetReasonParentNotAccepted, notAccepted
			continue
		}
		if !t.allowsListenerSet(gs.gw, ls.Namespace) {
			s.refused, s.msg = gwv1.ListenerSetReasonNotAllowed,
				fmt.Sprintf("Gateway %s does not allow ListenerSets from namespace %q (spec.allowedListeners)", gs.name, ls.Namespace)
			continue
		}
		for i := range ls.Spec.Listeners {
			e := &ls.Spec.Listeners[i]
			spec := &gwv1.Listener{Name: e.Name, Hostname: e.Hostname, Port: e.Port, Protocol: e.Protocol,
				TLS: e.TLS, AllowedRoutes: e.AllowedRoutes}
			l := t.newListener(gs, spec, gs.name+"/"+s.key+"/"+string(e.Name), &ls.ObjectMeta, kindListenerSet)
			markLaterConflict(gs.allListeners(), l)
			s.listeners = append(s.listeners, l)
		}
	}
}

// setParentIs reports whether the ListenerSet's parentRef names gw, as a
// route's parentRef would (group and kind default to Gateway's, the
// namespace to the set's).
func setParentIs(ls *gwv1.ListenerSet, gw *gwv1.Gateway) bool {
	p := ls.Spec.ParentRef
	return refersTo(gwv1.ParentReference{Group: p.Group, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}, ls.Namespace, gw)
}

// setParentKey is "<ns>/<name>" of the ListenerSet a route's parentRef
// names, "" when it names another kind.
func setParentKey(pr gwv1.ParentReference, routeNS string) string {
	if pr.Group == nil || string(*pr.Group) != gatewayGroup || pr.Kind == nil || string(*pr.Kind) != kindListenerSet {
		return ""
	}
	ns := routeNS
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	return ns + "/" + string(pr.Name)
}

// allowsListenerSet applies the Gateway's spec.allowedListeners (default
// None: no ListenerSets).
func (t *translator) allowsListenerSet(gw *gwv1.Gateway, ns string) bool {
	al := gw.Spec.AllowedListeners
	if al == nil || al.Namespaces == nil || al.Namespaces.From == nil {
		return false
	}
	switch *al.Namespaces.From {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gwv1.NamespacesFromSelector:
		if al.Namespaces.Selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(al.Namespaces.Selector)
		n := t.namespaces[ns]
		return err == nil && n != nil && sel.Matches(labels.Set(n.Labels))
	}
	return false
}

// markLaterConflict marks l Conflicted (and not Accepted) when an earlier
// valid listener uses its port with another protocol or the same hostname.
// A conflict counts even when l's protocol is one we do not serve: the
// port is taken either way.
func markLaterConflict(earlier []*listenerState, l *listenerState) {
	var reason gwv1.ListenerConditionReason
	var msg string
	for _, o := range earlier {
		if o.accepted.Status != metav1.ConditionTrue || o.conflicted.Status == metav1.ConditionTrue || o.spec.Port != l.spec.Port {
			continue
		}
		if o.spec.Protocol != l.spec.Protocol {
			reason, msg = gwv1.ListenerReasonProtocolConflict,
				fmt.Sprintf("port %d is used with protocol %s by listener %q of %s", l.spec.Port, o.spec.Protocol, o.spec.Name, o.owner)
			break
		}
		if o.hostname == l.hostname && reason == "" {
			reason, msg = gwv1.ListenerReasonHostnameConflict,
				fmt.Sprintf("listener %q of %s on port %d has hostname %q", o.spec.Name, o.owner, l.spec.Port, l.hostname)
		}
	}
	if reason == "" {
		return
	}
	l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(reason), msg, l.gen)
	l.conflicted = cond(string(gwv1.ListenerConditionConflicted), true, string(reason), msg, l.gen)
}

// listenerSetStatuses writes the status of every ListenerSet naming gs's
// Gateway and the Gateway's attachedListenerSets: the sets it takes that
// have at least one valid listener.
func (t *translator) listenerSetStatuses(gs *gatewayState) {
	if len(gs.sets) == 0 {
		return
	}
	var attached int32
	for _, s := range gs.sets {
		gen := s.ls.Generation
		var st gwv1.ListenerSetStatus
		if !s.allowed() {
			st.Conditions = []metav1.Condition{
				cond(string(gwv1.ListenerSetConditionAccepted), false, string(s.refused), s.msg, gen),
				cond(string(gwv1.ListenerSetConditionProgrammed), false, string(s.refused), s.msg, gen),
			}
			t.frag.listenerSets[s.key] = st
			continue
		}
		programmed := 0
		for _, l := range s.listeners {
			if l.programmed() {
				programmed++
			}
			st.Listeners = append(st.Listeners, gwv1.ListenerEntryStatus(l.status()))
		}
		if programmed > 0 {
			attached++
			msg := ""
			if n := len(s.listeners) - programmed; n > 0 {
				msg = fmt.Sprintf("%d of %d listeners are not valid", n, len(s.listeners))
			}
			st.Conditions = []metav1.Condition{
				cond(string(gwv1.ListenerSetConditionAccepted), true, string(gwv1.ListenerSetReasonAccepted), msg, gen),
				cond(string(gwv1.ListenerSetConditionProgrammed), true, string(gwv1.ListenerSetReasonProgrammed), "", gen),
			}
		} else {
			msg := "no listener is valid; see the listeners' conditions"
			st.Conditions = []metav1.Condition{
				cond(string(gwv1.ListenerSetConditionAccepted), false, string(gwv1.ListenerSetReasonListenersNotValid), msg, gen),
				cond(string(gwv1.ListenerSetConditionProgrammed), false, string(gwv1.ListenerSetReasonListenersNotValid), msg, gen),
			}
		}
		t.frag.listenerSets[s.key] = st
	}
	t.frag.status.AttachedListenerSets = &attached
}

// orphanedListenerSets gives an empty status to every ListenerSet whose
// parent Gateway does not exist (deleted, or never created): whatever it
// says — Accepted by a Gateway of ours that is gone, say — is stale, and
// no controller is left to correct it. Sets of other controllers'
// Gateways are left to them.
func (t *translator) orphanedListenerSets() {
	for _, ls := range t.listenerSets {
		if !slices.ContainsFunc(t.in.Gateways, func(gw *gwv1.Gateway) bool { return setParentIs(ls, gw) }) {
			t.out.Status.ListenerSets[key(&ls.ObjectMeta)] = gwv1.ListenerSetStatus{}
		}
	}
}
