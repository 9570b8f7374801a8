package translate_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/translate"
)

// benchInputs: two gateways, 1,000 HTTPRoutes over 20 namespaces, each with
// a model-header rule to one of 100 InferencePools and a path rule to one of
// 50 Services; 10 ready pods per pool, an EndpointSlice per Service, an
// InferenceObjective per pool.
func benchInputs(routes int) *translate.Inputs {
	in := &translate.Inputs{
		GatewayClasses: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: gwv1.GatewayClassSpec{ControllerName: translate.DefaultControllerName}}},
	}
	all := gwv1.NamespacesFromAll
	for _, name := range []string{"public", "internal"} {
		host := gwv1.Hostname("*." + name + ".example.com")
		in.Gateways = append(in.Gateways, &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "infra"},
			Spec: gwv1.GatewaySpec{GatewayClassName: "c", Listeners: []gwv1.Listener{{
				Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType, Hostname: &host,
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}},
			}}},
		})
	}
	ns := func(i int) string { return fmt.Sprintf("team-%02d", i%20) }
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	for p := 0; p < 100; p++ {
		in.InferencePools = append(in.InferencePools, &infv1.InferencePool{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool-%d", p), Namespace: ns(p)},
			Spec: infv1.InferencePoolSpec{
				Selector:    infv1.LabelSelector{MatchLabels: map[infv1.LabelKey]infv1.LabelValue{"pool": infv1.LabelValue(fmt.Sprint(p))}},
				TargetPorts: []infv1.Port{{Number: 8000}},
			},
		})
		prio := p%3 - 1
		in.InferenceObjectives = append(in.InferenceObjectives, &inferencealpha.InferenceObjective{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("obj-%d", p), Namespace: ns(p)},
			Spec:       inferencealpha.InferenceObjectiveSpec{Priority: &prio, PoolRef: inferencealpha.PoolObjectReference{Name: fmt.Sprintf("pool-%d", p)}},
		})
		for k := 0; k < 10; k++ {
			in.Pods = append(in.Pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool-%d-%d", p, k), Namespace: ns(p), Labels: map[string]string{"pool": fmt.Sprint(p)}},
				Status:     corev1.PodStatus{PodIP: fmt.Sprintf("10.%d.%d.%d", p/200, p%200, k), Conditions: ready},
			})
		}
	}
	for s := 0; s < 50; s++ {
		name := fmt.Sprintf("svc-%d", s)
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns(s)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})
		port, portName := int32(8080), "http"
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-x", Namespace: ns(s), Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		}
		for k := 0; k < 3; k++ {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.200.%d.%d", s, k)}})
		}
		in.EndpointSlices = append(in.EndpointSlices, slice)
	}
	poolGroup, poolKind := gwv1.Group(infv1.GroupName), gwv1.Kind("InferencePool")
	prefix := gwv1.PathMatchPathPrefix
	for r := 0; r < routes; r++ {
		pool, svc := r%100, r%50
		gwName := []string{"public", "internal"}[r%2]
		gwNS := gwv1.Namespace("infra")
		path := fmt.Sprintf("/app-%d", r)
		svcPort := gwv1.PortNumber(80)
		in.HTTPRoutes = append(in.HTTPRoutes, &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("route-%d", r), Namespace: ns(pool), Generation: 1},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(gwName), Namespace: &gwNS}}},
				Hostnames:       []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("app%d.%s.example.com", r, gwName))},
				Rules: []gwv1.HTTPRouteRule{
					{
						Matches: []gwv1.HTTPRouteMatch{{Headers: []gwv1.HTTPHeaderMatch{{Name: "X-Gateway-Model-Name", Value: fmt.Sprintf("model-%d", pool)}}}},
						BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
							Group: &poolGroup, Kind: &poolKind, Name: gwv1.ObjectName(fmt.Sprintf("pool-%d", pool)),
						}}}},
					},
					{
						Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &prefix, Value: &path}}},
						BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
							Name: gwv1.ObjectName(fmt.Sprintf("svc-%d", svc)), Port: &svcPort,
						}}}},
					},
				},
			},
		})
	}
	return in
}

func BenchmarkTranslate1kRoutes(b *testing.B) {
	in := benchInputs(1000)
	out := translate.Translate(in, translate.Options{})
	n := 0
	for _, g := range out.Gateways {
		n += len(g.Routes)
	}
	if n != 2000 {
		b.Fatalf("translated %d Route resources, want 2000", n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		translate.Translate(in, translate.Options{})
	}
}

// BenchmarkTranslateAndBuild1kRoutes adds what follows translation on every
// change: hashing every resource into versioned snapshot sets.
func BenchmarkTranslateAndBuild1kRoutes(b *testing.B) {
	in := benchInputs(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapshot.BuildAll(translate.Translate(in, translate.Options{})); err != nil {
			b.Fatal(err)
		}
	}
}
