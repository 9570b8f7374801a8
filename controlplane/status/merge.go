package status

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
)

// The merge functions compute the status to write from the status an object
// has (cur) and the one the translator wants (want). They are pure: the
// writer calls them again on a fresh copy after a conflict. A result equal to
// cur (equality.Semantic) means nothing to write.

// conditions returns want with LastTransitionTime carried over from cur for
// every condition whose status did not change (the Kubernetes convention:
// the time of the last status transition), and now for the others.
func conditions(cur, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	if want == nil {
		return nil
	}
	out := make([]metav1.Condition, len(want))
	for i, c := range want {
		if old := meta.FindStatusCondition(cur, c.Type); old != nil && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = now
		}
		out[i] = c
	}
	return out
}

func mergeGatewayClass(cur, want gwv1.GatewayClassStatus, now metav1.Time) gwv1.GatewayClassStatus {
	want.Conditions = conditions(cur.Conditions, want.Conditions, now)
	return want
}

// mergeGateway: a Gateway's conditions and listeners are the translator's;
// its addresses belong to the provisioner (provision.writeAddresses), which
// reads them from the proxy Service. Dropping them here would make the two
// overwrite each other in a loop.
func mergeGateway(cur, want gwv1.GatewayStatus, now metav1.Time) gwv1.GatewayStatus {
	want.Conditions = conditions(cur.Conditions, want.Conditions, now)
	want.Addresses = cur.Addresses
	want.Listeners = mergeListeners(cur.Listeners, want.Listeners,
		func(l *gwv1.ListenerStatus) (gwv1.SectionName, *[]metav1.Condition) { return l.Name, &l.Conditions }, now)
	return want
}

// mergeListenerSet: a ListenerSet's status is wholly the translator's
// (the controller of its parent Gateway).
func mergeListenerSet(cur, want gwv1.ListenerSetStatus, now metav1.Time) gwv1.ListenerSetStatus {
	want.Conditions = conditions(cur.Conditions, want.Conditions, now)
	want.Listeners = mergeListeners(cur.Listeners, want.Listeners,
		func(l *gwv1.ListenerEntryStatus) (gwv1.SectionName, *[]metav1.Condition) {
			return l.Name, &l.Conditions
		}, now)
	return want
}

// mergeListeners carries over the transition times of listener conditions
// (Gateway or ListenerSet listeners, matched by name).
func mergeListeners[L any](cur, want []L, fields func(*L) (gwv1.SectionName, *[]metav1.Condition), now metav1.Time) []L {
	if want == nil {
		return nil
	}
	out := make([]L, len(want))
	for i, l := range want {
		name, conds := fields(&l)
		var old []metav1.Condition
		for j := range cur {
			if n, c := fields(&cur[j]); n == name {
				old = *c
			}
		}
		*conds = conditions(old, *conds, now)
		out[i] = l
	}
	return out
}

// mergeHTTPRoute keeps other controllers' parent entries and replaces ours
// (ControllerName = controller) with want's.
func mergeHTTPRoute(cur, want gwv1.HTTPRouteStatus, controller string, now metav1.Time) gwv1.HTTPRouteStatus {
	parents := replaceOurs(cur.Parents, want.Parents,
		func(p gwv1.RouteParentStatus) bool { return string(p.ControllerName) == controller },
		func(p gwv1.RouteParentStatus) any { return p.ParentRef },
		func(p *gwv1.RouteParentStatus) *[]metav1.Condition { return &p.Conditions }, now)
	if parents == nil {
		// parents is a required field of the route status.
		parents = []gwv1.RouteParentStatus{}
	}
	return gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: parents}}
}

// mergeBackendTLSPolicy keeps other controllers' ancestor entries and
// replaces ours with want's.
func mergeBackendTLSPolicy(cur, want gwv1.PolicyStatus, controller string, now metav1.Time) gwv1.PolicyStatus {
	ancestors := replaceOurs(cur.Ancestors, want.Ancestors,
		func(a gwv1.PolicyAncestorStatus) bool { return string(a.ControllerName) == controller },
		func(a gwv1.PolicyAncestorStatus) any { return a.AncestorRef },
		func(a *gwv1.PolicyAncestorStatus) *[]metav1.Condition { return &a.Conditions }, now)
	if ancestors == nil {
		// ancestors is a required field of the policy status.
		ancestors = []gwv1.PolicyAncestorStatus{}
	}
	return gwv1.PolicyStatus{Ancestors: ancestors}
}

// mergeInferencePool keeps other controllers' parent entries and replaces
// ours with want's, so a Gateway whose routes no longer reference the pool
// loses its entry.
func mergeInferencePool(cur, want infv1.InferencePoolStatus, controller string, now metav1.Time) infv1.InferencePoolStatus {
	return infv1.InferencePoolStatus{Parents: replaceOurs(cur.Parents, want.Parents,
		func(p infv1.ParentStatus) bool { return string(p.ControllerName) == controller },
		func(p infv1.ParentStatus) any { return p.ParentRef },
		func(p *infv1.ParentStatus) *[]metav1.Condition { return &p.Conditions }, now)}
}

// replaceOurs keeps cur's parent entries that are not ours and appends
// want's, each with its conditions' times carried over from our cur entry
// for the same parent reference.
func replaceOurs[P any](cur, want []P, ours func(P) bool, ref func(P) any, conds func(*P) *[]metav1.Condition, now metav1.Time) []P {
	var out []P
	for _, p := range cur {
		if !ours(p) {
			out = append(out, p)
		}
	}
	for _, p := range want {
		var old []metav1.Condition
		for _, c := range cur {
			if ours(c) && equality.Semantic.DeepEqual(ref(c), ref(p)) {
				old = *conds(&c)
			}
		}
		*conds(&p) = conditions(old, *conds(&p), now)
		out = append(out, p)
	}
	return out
}

// isDefaultParent reports the placeholder entry the v0.5.1 CRD defaults the
// legacy pool's status to ("kind: Status, name: default"): a controller
// removes it when it adds its own entry and puts it back when it leaves.
func isDefaultParent(p inferencealpha.PoolStatus) bool {
	return p.GatewayRef.Kind != nil && *p.GatewayRef.Kind == "Status" && p.GatewayRef.Name == "default"
}

// mergeLegacyPool: legacy entries carry no controller name, so ours are the
// ones naming one of our Gateways (ours, keyed "<ns>/<name>").
func mergeLegacyPool(cur, want inferencealpha.InferencePoolStatus, poolNS string, ours map[string]bool, now metav1.Time) inferencealpha.InferencePoolStatus {
	key := func(r inferencealpha.ParentGatewayReference) string {
		ns := poolNS
		if r.Namespace != nil && *r.Namespace != "" {
			ns = *r.Namespace
		}
		return ns + "/" + r.Name
	}
	isGateway := func(r inferencealpha.ParentGatewayReference) bool {
		return r.Kind == nil || *r.Kind == "Gateway"
	}
	out := inferencealpha.InferencePoolStatus{}
	var defaults []inferencealpha.PoolStatus
	hadOurs := false
	for _, p := range cur.Parents {
		switch {
		case isDefaultParent(p):
			defaults = append(defaults, p)
		case isGateway(p.GatewayRef) && ours[key(p.GatewayRef)]:
			hadOurs = true
		default:
			out.Parents = append(out.Parents, p)
		}
	}
	for _, p := range want.Parents {
		var old []metav1.Condition
		for _, c := range cur.Parents {
			if !isDefaultParent(c) && key(c.GatewayRef) == key(p.GatewayRef) {
				old = c.Conditions
			}
		}
		p.Conditions = conditions(old, p.Conditions, now)
		out.Parents = append(out.Parents, p)
	}
	if len(out.Parents) == 0 {
		if len(defaults) > 0 || hadOurs {
			out.Parents = append(out.Parents, defaultLegacyParent(defaults))
		}
	}
	return out
}

func defaultLegacyParent(existing []inferencealpha.PoolStatus) inferencealpha.PoolStatus {
	if len(existing) > 0 {
		return existing[0]
	}
	kind := "Status"
	return inferencealpha.PoolStatus{
		GatewayRef: inferencealpha.ParentGatewayReference{Kind: &kind, Name: "default"},
		Conditions: []metav1.Condition{{
			Type: inferencealpha.ConditionAccepted, Status: metav1.ConditionUnknown, Reason: inferencealpha.ReasonPending,
			Message: "Waiting for controller", LastTransitionTime: metav1.Unix(0, 0),
		}},
	}
}

func mergeModel(cur, want inferencealpha.ModelStatus, now metav1.Time) inferencealpha.ModelStatus {
	want.Conditions = conditions(cur.Conditions, want.Conditions, now)
	return want
}
