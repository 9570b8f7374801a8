package translate_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/translate"
)

// scaleInputs is bench-controlplane's world in process: 50 Gateways, one
// namespace each, with 100 HTTPRoutes (one rule, a header filter, to one of
// the namespace's 10 InferencePools) and 20 ready pods per pool — 5,000
// routes, 500 pools, 10,000 pods.
func scaleInputs() *translate.Inputs {
	in := &translate.Inputs{
		GatewayClasses: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: gwv1.GatewayClassSpec{ControllerName: translate.DefaultControllerName}}},
	}
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	poolGroup, poolKind := gwv1.Group(infv1.GroupName), gwv1.Kind("InferencePool")
	prefix := gwv1.PathMatchPathPrefix
	for g := range 50 {
		ns := fmt.Sprintf("gw-%02d", g)
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		in.Gateways = append(in.Gateways, &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: ns},
			Spec: gwv1.GatewaySpec{GatewayClassName: "c", Listeners: []gwv1.Listener{{
				Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}},
		})
		for k := range 10 {
			in.InferencePools = append(in.InferencePools, &infv1.InferencePool{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool-%d", k), Namespace: ns, Annotations: map[string]string{
					translate.PickerProfileAnnotation: "scorers: [{name: queue, weight: 2}, {name: kv-cache, weight: 2}, {name: prefix-cache, weight: 3}]\n"}},
				Spec: infv1.InferencePoolSpec{
					Selector:    infv1.LabelSelector{MatchLabels: map[infv1.LabelKey]infv1.LabelValue{"app": infv1.LabelValue(fmt.Sprintf("pool-%d", k))}},
					TargetPorts: []infv1.Port{{Number: 8000}},
				},
			})
			for j := range 20 {
				in.Pods = append(in.Pods, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d-%d", k, j), Namespace: ns, Labels: map[string]string{"app": fmt.Sprintf("pool-%d", k)}},
					Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", g, k, j+1), Conditions: ready},
				})
			}
		}
		for r := range 100 {
			path := fmt.Sprintf("/r-%d", r)
			in.HTTPRoutes = append(in.HTTPRoutes, &gwv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r-%d", r), Namespace: ns, Generation: 1},
				Spec: gwv1.HTTPRouteSpec{
					CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}},
					Rules: []gwv1.HTTPRouteRule{{
						Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &prefix, Value: &path}}},
						Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestHeaderModifier,
							RequestHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "x-bench", Value: "0"}}}}},
						BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
							Group: &poolGroup, Kind: &poolKind, Name: gwv1.ObjectName(fmt.Sprintf("pool-%d", r%10)),
						}}}},
					}},
				},
			})
		}
	}
	return in
}

// BenchmarkTranslateScale is what one change costs the control plane at
// bench-controlplane's scale before any incremental work: translating every
// gateway and hashing every resource into snapshot sets.
func BenchmarkTranslateScale(b *testing.B) {
	in := scaleInputs()
	out := translate.Translate(in, translate.Options{})
	n := 0
	for _, g := range out.Gateways {
		n += len(g.Routes)
	}
	if len(out.Gateways) != 50 || n != 5000 {
		b.Fatalf("translated %d gateways, %d routes; want 50, 5000", len(out.Gateways), n)
	}
	b.Run("translate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			translate.Translate(in, translate.Options{})
		}
	})
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := snapshot.BuildAll(out); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One route of one gateway changes, as in bench-controlplane: only
	// that gateway is translated and hashed again.
	sets, err := snapshot.BuildAll(out)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("incremental-route-change", func(b *testing.B) {
		b.ReportAllocs()
		prev, prevSets := out, sets
		i := 0
		for b.Loop() {
			r := in.HTTPRoutes[(i*7)%len(in.HTTPRoutes)]
			c := r.DeepCopy()
			c.Spec.Rules[0].Filters[0].RequestHeaderModifier.Set[0].Value = fmt.Sprint(i)
			var ch translate.Changes
			ch.Note(r)
			ch.Note(c)
			in.HTTPRoutes[(i*7)%len(in.HTTPRoutes)] = c
			next := translate.TranslateIncremental(prev, in, translate.Options{}, &ch)
			nextSets, err := snapshot.BuildChanged(next, prev, prevSets)
			if err != nil {
				b.Fatal(err)
			}
			prev, prevSets = next, nextSets
			i++
		}
	})
	// Pods' readiness flips in 30 namespaces at once, as in one pass of
	// bench-controlplane's churn: their gateways list their endpoints again
	// (noted as Pods), against the same change translating those gateways
	// whole (noted as any other object of their namespaces, as before
	// Changes.Endpoints).
	for _, whole := range []bool{false, true} {
		name := "incremental-30-pods-ready"
		if whole {
			name += "-translating-their-gateways"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			prev, prevSets := out, sets
			i := 0
			for b.Loop() {
				var ch translate.Changes
				for range 30 {
					k := (i * 211) % len(in.Pods)
					i++
					p := in.Pods[k].DeepCopy()
					for j := range p.Status.Conditions {
						if c := &p.Status.Conditions[j]; c.Type == corev1.PodReady {
							if c.Status == corev1.ConditionTrue {
								c.Status = corev1.ConditionFalse
							} else {
								c.Status = corev1.ConditionTrue
							}
						}
					}
					in.Pods[k] = p
					ch.Note(p)
				}
				if whole {
					ch.Namespaces, ch.Endpoints = ch.Endpoints, nil
				}
				next := translate.TranslateIncremental(prev, in, translate.Options{}, &ch)
				nextSets, err := snapshot.BuildChanged(next, prev, prevSets)
				if err != nil {
					b.Fatal(err)
				}
				prev, prevSets = next, nextSets
			}
		})
	}
}
