package status

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/source/kube"
	"github.com/infergate/infergate/controlplane/translate"
)

// routeStatus is our parent entry on gw with one Accepted condition.
func routeStatus(accepted metav1.ConditionStatus) gwv1.HTTPRouteStatus {
	return gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{{
		ParentRef:      gwv1.ParentReference{Name: "gw"},
		ControllerName: translate.DefaultControllerName,
		Conditions: []metav1.Condition{{
			Type: string(gwv1.RouteConditionAccepted), Status: accepted, Reason: "Test", ObservedGeneration: 1,
		}},
	}}}}
}

// TestWriterSkipsObjectsInSync: a round compares only objects whose cached
// version or wanted status changed since they were last in sync; an object
// another writer changed is repaired even though our want did not change.
func TestWriterSkipsObjectsInSync(t *testing.T) {
	ctx := context.Background()
	route := &gwv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", Generation: 1, ResourceVersion: "1"},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(route)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.HTTPRoutes: "HTTPRouteList"}, &unstructured.Unstructured{Object: u})
	w := NewWriter(dyn, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	updates := func() int {
		n := 0
		for _, a := range dyn.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		dyn.ClearActions()
		return n
	}
	// cached returns the route as the informer would hold it now.
	cached := func() *gwv1.HTTPRoute {
		got, err := dyn.Resource(kube.HTTPRoutes).Namespace("ns").Get(ctx, "r", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var r gwv1.HTTPRoute
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &r); err != nil {
			t.Fatal(err)
		}
		dyn.ClearActions()
		return &r
	}
	write := func(r *gwv1.HTTPRoute, want gwv1.HTTPRouteStatus) int {
		t.Helper()
		in := &translate.Inputs{HTTPRoutes: []*gwv1.HTTPRoute{r}}
		st := &translate.Status{HTTPRoutes: map[string]gwv1.HTTPRouteStatus{"ns/r": want}}
		if _, err := w.Write(ctx, in, st); err != nil {
			t.Fatal(err)
		}
		return updates()
	}

	if n := write(route, routeStatus(metav1.ConditionTrue)); n != 1 {
		t.Fatalf("first round: %d status updates, want 1", n)
	}
	synced := cached()
	if n := write(synced, routeStatus(metav1.ConditionTrue)); n != 0 {
		t.Fatalf("round with nothing changed: %d status updates, want 0", n)
	}
	if n := len(dyn.Actions()); n != 0 {
		t.Fatalf("round with nothing changed made %d API calls", n)
	}
	// Skipped, not compared: the same version with another status (which
	// no API server would produce) is not even looked at.
	if n := write(route, routeStatus(metav1.ConditionTrue)); n != 0 {
		t.Fatalf("round with version and want unchanged compared the status (%d updates)", n)
	}
	if n := write(synced, routeStatus(metav1.ConditionFalse)); n != 1 {
		t.Fatalf("round with a new status: %d status updates, want 1", n)
	}
	// Another writer drops our entry; our want is the one last written.
	drifted := cached()
	drifted.Status = gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{}}}
	// The fake API server stores the resourceVersion it is given; a real
	// one gives every write a new one.
	drifted.ResourceVersion = "2"
	u, err = runtime.DefaultUnstructuredConverter.ToUnstructured(drifted)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(kube.HTTPRoutes).Namespace("ns").UpdateStatus(ctx, &unstructured.Unstructured{Object: u}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn.ClearActions()
	if n := write(cached(), routeStatus(metav1.ConditionFalse)); n != 1 {
		t.Fatalf("round after another writer changed the status: %d status updates, want 1", n)
	}
	if got := cached().Status.Parents; len(got) != 1 || got[0].Conditions[0].Status != metav1.ConditionFalse {
		t.Fatalf("status not repaired: %+v", got)
	}
}

// BenchmarkWriteInSync is a round over 5,000 routes all in sync, as every
// translation of bench-controlplane's pod churn hands the writer: the same
// objects with equal wanted statuses (freshly built maps sharing the
// routes' parent slices, as a translation reusing its gateways builds
// them), against a round in which one route is a new object (the cache
// changed it), which visits every route.
func BenchmarkWriteInSync(b *testing.B) {
	ctx := context.Background()
	const n = 5000
	in := &translate.Inputs{}
	st := &translate.Status{HTTPRoutes: map[string]gwv1.HTTPRouteStatus{}}
	var objs []runtime.Object
	for i := range n {
		want := routeStatus(metav1.ConditionTrue)
		r := &gwv1.HTTPRoute{
			TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("r-%d", i), Generation: 1, ResourceVersion: "1"},
			Status:     want,
		}
		in.HTTPRoutes = append(in.HTTPRoutes, r)
		st.HTTPRoutes["ns/"+r.Name] = want
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r)
		if err != nil {
			b.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: u})
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.HTTPRoutes: "HTTPRouteList"}, objs...)
	w := NewWriter(dyn, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := w.Write(ctx, in, st); err != nil {
		b.Fatal(err)
	}
	// next is the next translation's inputs and statuses: equal wants in
	// new maps, the route objects as they were, or one of them new.
	next := func(newObject bool) (*translate.Inputs, *translate.Status) {
		st2 := &translate.Status{HTTPRoutes: maps.Clone(st.HTTPRoutes)}
		in2 := &translate.Inputs{HTTPRoutes: slices.Clone(in.HTTPRoutes)}
		if newObject {
			in2.HTTPRoutes[0] = in2.HTTPRoutes[0].DeepCopy()
		}
		return in2, st2
	}
	for _, tc := range []struct {
		name      string
		newObject bool
	}{{"same-objects", false}, {"one-object-new", true}} {
		in2, st2 := next(tc.newObject)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if updated, err := w.Write(ctx, in2, st2); err != nil || updated != 0 {
					b.Fatalf("round: %d updated, %v", updated, err)
				}
				if tc.newObject {
					w.last = nil // every iteration is the first round to see it
				}
			}
		})
	}
}
