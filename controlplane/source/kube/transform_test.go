package kube

import (
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
)

func TestSlimPodKeepsWhatTheTranslatorReads(t *testing.T) {
	now := metav1.Now()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "a", translate.EngineTypeLabel: "sglang"},
			Annotations:   map[string]string{translate.KVEventsPortAnnotation: "5557", "other": "x", lastApplied: "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}, DeletionTimestamp: &now},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "server", Image: "vllm", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}}},
			{Name: "sidecar", Image: "x"},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue, Message: "m"}}},
	}
	got, _ := slimCore(p)
	s := got.(*corev1.Pod)
	switch {
	case s.Name != "p" || s.Namespace != "ns" || s.Labels["app"] != "a" || s.Labels[translate.EngineTypeLabel] != "sglang":
		t.Errorf("identity or labels lost: %+v", s.ObjectMeta)
	case s.Annotations[translate.KVEventsPortAnnotation] != "5557" || len(s.Annotations) != 1:
		t.Errorf("annotations = %v, want only the infergate ones", s.Annotations)
	case s.DeletionTimestamp == nil || s.ManagedFields != nil:
		t.Errorf("deletion mark lost or managed fields kept: %+v", s.ObjectMeta)
	case len(s.Spec.Containers) != 1 || s.Spec.Containers[0].Ports[0].ContainerPort != 8000 || s.Spec.Containers[0].Env != nil:
		t.Errorf("containers = %+v, want the one with ports, ports only", s.Spec.Containers)
	case s.Status.PodIP != "10.0.0.1" || len(s.Status.Conditions) != 1 || s.Status.Conditions[0].Type != corev1.PodReady:
		t.Errorf("status = %+v", s.Status)
	case translate.PodServing(s) != translate.PodServing(p):
		t.Error("serving changed")
	}
	again, _ := slimCore(s)
	if again.(*corev1.Pod).Status.PodIP != "10.0.0.1" || len(again.(*corev1.Pod).Spec.Containers) != 1 {
		t.Error("slimming is not idempotent")
	}
}

func TestSlimSecretsAndConfigMaps(t *testing.T) {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Annotations: map[string]string{lastApplied: "{}", "keep": "me"}}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("c"), corev1.TLSPrivateKeyKey: []byte("k"), "release": make([]byte, 1<<20)}}
	slimCore(sec)
	if len(sec.Data) != 2 || sec.Type != corev1.SecretTypeTLS || sec.Annotations["keep"] != "me" || sec.Annotations[lastApplied] != "" {
		t.Errorf("secret = %v %v %v", sec.Type, sec.Annotations, len(sec.Data))
	}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "helm"}, Data: map[string][]byte{"release": make([]byte, 1<<20)}}
	slimCore(other)
	if other.Data != nil || other.Name != "helm" {
		t.Errorf("an unrelated secret keeps %d data keys", len(other.Data))
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ca"}, Data: map[string]string{"ca.crt": "pem", "app.yaml": "x"}, BinaryData: map[string][]byte{"b": {1}}}
	slimCore(cm)
	if len(cm.Data) != 1 || cm.Data["ca.crt"] != "pem" || cm.BinaryData != nil {
		t.Errorf("configmap = %v %v", cm.Data, cm.BinaryData)
	}
}

func TestCustomTransformConvertsOnce(t *testing.T) {
	var k customKind
	for _, c := range customKinds() {
		if c.gvr == HTTPRoutes {
			k = c
		}
	}
	tr := k.transform(slog.New(slog.DiscardHandler))
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "r", "namespace": "ns", "managedFields": []any{map[string]any{"manager": "x"}}},
		"spec":     map[string]any{"parentRefs": []any{map[string]any{"name": "gw"}}},
	}}
	out, err := tr(u)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := out.(*gwv1.HTTPRoute)
	if !ok || r.Name != "r" || len(r.Spec.ParentRefs) != 1 || r.ManagedFields != nil {
		t.Fatalf("transform = %#v", out)
	}
	if again, _ := tr(r); again != r {
		t.Error("an object already converted was converted again")
	}
	in := &translate.Inputs{}
	if !k.add(in, r) || len(in.HTTPRoutes) != 1 {
		t.Error("converted route not added")
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "bad"}, "spec": map[string]any{"parentRefs": "not a list"}}}
	kept, err := tr(bad)
	if err != nil || kept != bad {
		t.Fatalf("an object that does not decode: %v, %v", kept, err)
	}
	if k.add(in, kept) || len(in.HTTPRoutes) != 1 {
		t.Error("an object that did not decode was added")
	}
}

func TestStatusOnly(t *testing.T) {
	route := func(gen int64, ann string, parents int) *gwv1.HTTPRoute {
		r := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: gen, Annotations: map[string]string{"a": ann}}}
		r.Status.Parents = make([]gwv1.RouteParentStatus, parents)
		return r
	}
	if !statusOnly(route(2, "x", 0), route(2, "x", 1)) {
		t.Error("a status write was taken for a change")
	}
	if statusOnly(route(2, "x", 0), route(3, "x", 0)) {
		t.Error("a spec change (generation) was ignored")
	}
	if statusOnly(route(2, "x", 0), route(2, "y", 0)) {
		t.Error("an annotation change (a picker profile) was ignored")
	}
	gw := func(addr string) *gwv1.Gateway {
		g := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns", Generation: 1}}
		if addr != "" {
			g.Status.Addresses = []gwv1.GatewayStatusAddress{{Value: addr}}
		}
		return g
	}
	if statusOnly(gw(""), gw("203.0.113.7")) {
		t.Error("a Gateway's new address (read by the translator) was ignored")
	}
	if !statusOnly(gw("203.0.113.7"), gw("203.0.113.7")) {
		t.Error("a Gateway status write without an address change was taken for a change")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 1}}
	if statusOnly(pod, pod.DeepCopy()) {
		t.Error("a pod update was ignored (its status is read)")
	}
}
