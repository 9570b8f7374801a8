package status

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
)

const ours = "infergate.dev/gateway-controller"

var (
	t0  = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now = metav1.NewTime(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
)

func c(typ string, s metav1.ConditionStatus, reason string, ltt metav1.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Reason: reason, ObservedGeneration: 1, LastTransitionTime: ltt}
}

func TestConditionsKeepTransitionTimeUnlessStatusChanges(t *testing.T) {
	cur := []metav1.Condition{
		c("Accepted", metav1.ConditionTrue, "Accepted", t0),
		c("ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", t0),
	}
	want := []metav1.Condition{
		c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{}),
		c("ResolvedRefs", metav1.ConditionFalse, "BackendNotFound", metav1.Time{}),
		c("Programmed", metav1.ConditionTrue, "Programmed", metav1.Time{}),
	}
	got := conditions(cur, want, now)
	if !got[0].LastTransitionTime.Equal(&t0) {
		t.Errorf("unchanged condition got time %v, want %v", got[0].LastTransitionTime, t0)
	}
	for _, i := range []int{1, 2} {
		if !got[i].LastTransitionTime.Equal(&now) {
			t.Errorf("%s: got time %v, want now", got[i].Type, got[i].LastTransitionTime)
		}
	}
	// Writing the same status again is a no-op.
	if again := conditions(got, want, metav1.NewTime(now.Add(time.Hour))); !equality.Semantic.DeepEqual(again, got) {
		t.Errorf("second merge changed conditions:\n%v\n%v", again, got)
	}
}

func TestMergeHTTPRouteKeepsOtherControllers(t *testing.T) {
	gw := gwv1.ParentReference{Name: "gw"}
	other := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "theirs"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}
	stale := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "old"}, ControllerName: ours,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}
	mine := gwv1.RouteParentStatus{ParentRef: gw, ControllerName: ours,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}
	cur := gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{other, stale, mine}}}
	want := gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{{ParentRef: gw, ControllerName: ours,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})}}}}}

	got := mergeHTTPRoute(cur, want, ours, now)
	if len(got.Parents) != 2 || got.Parents[0].ControllerName != "example.com/other" || got.Parents[1].ParentRef.Name != "gw" {
		t.Fatalf("parents %+v: want the other controller's entry and ours, without the stale one", got.Parents)
	}
	if !got.Parents[1].Conditions[0].LastTransitionTime.Equal(&t0) {
		t.Errorf("unchanged parent condition lost its transition time")
	}
	if again := mergeHTTPRoute(got, want, ours, now); !equality.Semantic.DeepEqual(again, got) {
		t.Errorf("merge is not idempotent")
	}
	// No parent of ours left: only the other controller's entry stays.
	if got := mergeHTTPRoute(cur, gwv1.HTTPRouteStatus{}, ours, now); len(got.Parents) != 1 {
		t.Errorf("parents %+v, want only the other controller's", got.Parents)
	}
}

func TestMergeInferencePoolRemovesStaleParents(t *testing.T) {
	ref := func(name string) infv1.ParentReference {
		return infv1.ParentReference{Kind: "Gateway", Name: infv1.ObjectName(name), Namespace: "ns"}
	}
	cur := infv1.InferencePoolStatus{Parents: []infv1.ParentStatus{
		{ParentRef: ref("gone"), ControllerName: ours, Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}},
		{ParentRef: ref("theirs"), ControllerName: "example.com/other"},
	}}
	want := infv1.InferencePoolStatus{Parents: []infv1.ParentStatus{
		{ParentRef: ref("gw"), ControllerName: ours, Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})}},
	}}
	got := mergeInferencePool(cur, want, ours, now)
	if len(got.Parents) != 2 || got.Parents[0].ParentRef.Name != "theirs" || got.Parents[1].ParentRef.Name != "gw" {
		t.Fatalf("parents %+v", got.Parents)
	}
	if got := mergeInferencePool(cur, infv1.InferencePoolStatus{}, ours, now); len(got.Parents) != 1 {
		t.Fatalf("parents %+v, want only the other controller's", got.Parents)
	}
}

func TestMergeLegacyPoolDefaultParent(t *testing.T) {
	kind := "Status"
	def := inferencealpha.PoolStatus{GatewayRef: inferencealpha.ParentGatewayReference{Kind: &kind, Name: "default"}}
	gw := inferencealpha.PoolStatus{GatewayRef: inferencealpha.ParentGatewayReference{Name: "gw"},
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})}}
	ourGateways := map[string]bool{"ns/gw": true}

	got := mergeLegacyPool(inferencealpha.InferencePoolStatus{Parents: []inferencealpha.PoolStatus{def}},
		inferencealpha.InferencePoolStatus{Parents: []inferencealpha.PoolStatus{gw}}, "ns", ourGateways, now)
	if len(got.Parents) != 1 || got.Parents[0].GatewayRef.Name != "gw" {
		t.Fatalf("parents %+v: the default placeholder must give way to ours", got.Parents)
	}
	back := mergeLegacyPool(got, inferencealpha.InferencePoolStatus{}, "ns", ourGateways, now)
	if len(back.Parents) != 1 || !isDefaultParent(back.Parents[0]) {
		t.Fatalf("parents %+v: the placeholder comes back when we leave", back.Parents)
	}
}

func TestMergeGatewayListeners(t *testing.T) {
	cur := gwv1.GatewayStatus{Listeners: []gwv1.ListenerStatus{{Name: "http", AttachedRoutes: 1,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}}}
	want := gwv1.GatewayStatus{Listeners: []gwv1.ListenerStatus{{Name: "http", AttachedRoutes: 2,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})}}}}
	got := mergeGateway(cur, want, now)
	if got.Listeners[0].AttachedRoutes != 2 || !got.Listeners[0].Conditions[0].LastTransitionTime.Equal(&t0) {
		t.Fatalf("listener %+v", got.Listeners[0])
	}
}

// The provisioner writes a Gateway's addresses; a status write of the
// translator's conditions must keep them (they used to be wiped, and the
// two writers then rewrote the Gateway every few hundred milliseconds).
func TestMergeGatewayKeepsAddresses(t *testing.T) {
	ip := gwv1.IPAddressType
	cur := gwv1.GatewayStatus{Addresses: []gwv1.GatewayStatusAddress{{Type: &ip, Value: "10.0.0.7"}}}
	want := gwv1.GatewayStatus{Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})}}
	got := mergeGateway(cur, want, now)
	if len(got.Addresses) != 1 || got.Addresses[0].Value != "10.0.0.7" {
		t.Fatalf("addresses %+v, want the provisioner's 10.0.0.7 kept", got.Addresses)
	}
	if len(got.Conditions) != 1 {
		t.Fatalf("conditions %+v", got.Conditions)
	}
}

func TestMergeBackendTLSPolicyAncestors(t *testing.T) {
	gw := gwv1.ParentReference{Name: "gw"}
	other := gwv1.PolicyAncestorStatus{AncestorRef: gwv1.ParentReference{Name: "theirs"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}
	stale := gwv1.PolicyAncestorStatus{AncestorRef: gwv1.ParentReference{Name: "old"}, ControllerName: ours,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)}}
	cur := gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{other, stale}}
	want := gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{{AncestorRef: gw, ControllerName: ours,
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionFalse, "Conflicted", metav1.Time{})}}}}

	got := mergeBackendTLSPolicy(cur, want, ours, now)
	if len(got.Ancestors) != 2 || got.Ancestors[0].ControllerName != "example.com/other" || got.Ancestors[1].AncestorRef.Name != "gw" {
		t.Fatalf("ancestors %+v: want the other controller's entry and ours, without the stale one", got.Ancestors)
	}
	if lt := got.Ancestors[1].Conditions[0].LastTransitionTime; !lt.Equal(&now) {
		t.Errorf("new condition got transition time %v, want %v", lt, now)
	}
	// No Gateway of ours uses the policy any more: an empty list, never nil
	// (ancestors is required).
	if got := mergeBackendTLSPolicy(gwv1.PolicyStatus{Ancestors: []gwv1.PolicyAncestorStatus{stale}}, gwv1.PolicyStatus{}, ours, now); got.Ancestors == nil || len(got.Ancestors) != 0 {
		t.Errorf("ancestors %+v, want an empty list", got.Ancestors)
	}
}

// TestMergeListenerSet: set and listener conditions keep their transition
// times; an empty wanted status (the parent Gateway is gone) clears what
// the set carried.
func TestMergeListenerSet(t *testing.T) {
	cur := gwv1.ListenerSetStatus{
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", t0)},
		Listeners: []gwv1.ListenerEntryStatus{{Name: "a", AttachedRoutes: 1,
			Conditions: []metav1.Condition{c("Programmed", metav1.ConditionTrue, "Programmed", t0)}}},
	}
	want := gwv1.ListenerSetStatus{
		Conditions: []metav1.Condition{c("Accepted", metav1.ConditionTrue, "Accepted", metav1.Time{})},
		Listeners: []gwv1.ListenerEntryStatus{{Name: "a", AttachedRoutes: 2,
			Conditions: []metav1.Condition{c("Programmed", metav1.ConditionTrue, "Programmed", metav1.Time{})}}},
	}
	got := mergeListenerSet(cur, want, now)
	if !got.Conditions[0].LastTransitionTime.Equal(&t0) || !got.Listeners[0].Conditions[0].LastTransitionTime.Equal(&t0) {
		t.Errorf("unchanged conditions lost their transition time: %+v", got)
	}
	if got.Listeners[0].AttachedRoutes != 2 {
		t.Errorf("attachedRoutes = %d, want 2", got.Listeners[0].AttachedRoutes)
	}
	if cleared := mergeListenerSet(cur, gwv1.ListenerSetStatus{}, now); len(cleared.Conditions) != 0 || len(cleared.Listeners) != 0 {
		t.Errorf("an empty wanted status left %+v", cleared)
	}
}
