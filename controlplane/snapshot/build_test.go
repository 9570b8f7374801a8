package snapshot

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func inputs(podIP string) *translate.Inputs {
	group := gwv1.Group("inference.networking.k8s.io")
	kind := gwv1.Kind("InferencePool")
	gw := func(name string) *gwv1.Gateway {
		return &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec:       gwv1.GatewaySpec{GatewayClassName: "c", Listeners: []gwv1.Listener{{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}},
		}
	}
	return &translate.Inputs{
		GatewayClasses: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: gwv1.GatewayClassSpec{ControllerName: translate.DefaultControllerName}}},
		Gateways:       []*gwv1.Gateway{gw("a"), gw("b")},
		HTTPRoutes: []*gwv1.HTTPRoute{{
			ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "a"}}},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "p"},
				}}}}},
			},
		}},
		InferencePools: []*infv1.InferencePool{{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec:       infv1.InferencePoolSpec{Selector: infv1.LabelSelector{MatchLabels: map[infv1.LabelKey]infv1.LabelValue{"app": "m"}}, TargetPorts: []infv1.Port{{Number: 8000}}},
		}},
		Pods: []*corev1.Pod{{
			ObjectMeta: metav1.ObjectMeta{Name: "m-0", Namespace: "ns", Labels: map[string]string{"app": "m"}},
			Status:     corev1.PodStatus{PodIP: podIP, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}},
	}
}

func TestBuildAll(t *testing.T) {
	sets, err := BuildAll(translate.Translate(inputs("127.0.0.11"), translate.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 {
		t.Fatalf("got %d sets, want 2", len(sets))
	}
	a, b := sets["ns/a"], sets["ns/b"]
	// a: listener, route, backend, endpoints; b: its listener only.
	if a.Count() != 4 || b.Count() != 1 {
		t.Fatalf("counts a=%d b=%d, want 4 and 1", a.Count(), b.Count())
	}
	for _, ref := range b.Refs() {
		if ref.Name[:5] != "ns/b/" {
			t.Errorf("gateway b holds %s", ref.Name)
		}
	}

	// Pod churn changes the Endpoints resource only.
	moved, err := BuildAll(translate.Translate(inputs("127.0.0.12"), translate.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if moved["ns/a"].Version == a.Version {
		t.Fatal("version unchanged after an endpoint change")
	}
	if moved["ns/b"].Version != b.Version {
		t.Fatal("gateway b changed although none of its inputs did")
	}
	changed := map[string]bool{}
	old := map[string]string{}
	for _, ref := range a.Refs() {
		old[ref.Name+ref.TypeUrl] = ref.Hash
	}
	for _, ref := range moved["ns/a"].Refs() {
		if old[ref.Name+ref.TypeUrl] != ref.Hash {
			changed[ref.TypeUrl] = true
		}
	}
	if len(changed) != 1 || !changed[snapshotv1.TypeEndpoints] {
		t.Fatalf("changed types %v, want only Endpoints", changed)
	}
}
