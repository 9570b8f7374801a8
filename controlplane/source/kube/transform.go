package kube

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The informers keep only what the translator reads of each object: a
// cluster's Pods, Secrets and ConfigMaps are mostly not ours (every Pod's
// spec, Helm release Secrets, application configs), and at ten thousand
// Pods their full objects are most of the control plane's memory. The
// transforms run once per object version as it enters the cache, so the
// cost is paid per change, not per translation.

// lastApplied is kubectl's copy of the whole object, often its largest
// annotation; nothing here reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Data keys the translator reads: certificate Secrets (listeners, backend
// client certificates) and CA ConfigMaps (BackendTLSPolicy, frontend
// validation). A Secret or ConfigMap is kept with its type and metadata —
// references to it resolve, and a wrong one is reported — but without any
// other data.
var (
	secretKeys    = []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"}
	configMapKeys = []string{"ca.crt"}
)

// slimMeta drops what no reader of the cache uses from an object's
// metadata: managed fields, kubectl's last-applied copy.
func slimMeta(m metav1.Object) {
	m.SetManagedFields(nil)
	if a := m.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
	}
}

// slimCore is the transform of the core informers. It mutates obj in
// place, which client-go allows (the object is the informer's own), and is
// idempotent.
func slimCore(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return slimPod(o), nil
	case *corev1.Secret:
		slimMeta(o)
		o.Data = keep(o.Data, secretKeys)
		o.StringData = nil
	case *corev1.ConfigMap:
		slimMeta(o)
		o.Data = keep(o.Data, configMapKeys)
		o.BinaryData = nil
	case metav1.Object:
		slimMeta(o)
	}
	return obj, nil
}

// slimPod keeps a pod's name, labels, infergate annotations (KV-event
// ports), deletion mark, container ports (named Service targetPorts), IP,
// phase and Ready condition: what endpoint selection and the proxy count
// read.
func slimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Generation: p.Generation, CreationTimestamp: p.CreationTimestamp,
			DeletionTimestamp: p.DeletionTimestamp, Labels: p.Labels,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "infergate.dev/") {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out
}

// keep returns the entries of m under keys (nil when none).
func keep[V any](m map[string]V, keys []string) map[string]V {
	var out map[string]V
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]V, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

// statusOnly reports whether an update of a custom resource changed
// nothing the translator reads: its status alone (and resourceVersion,
// managed fields) — above all the status the control plane writes itself,
// which would otherwise cost a translation per status write. The API server
// bumps metadata.generation on every spec change of a resource with a
// status subresource (every kind here has one); labels and annotations
// (picker profiles) do not bump it, so they are compared. Of statuses, the
// translator reads only a Gateway's addresses.
func statusOnly(old, obj any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := obj.(metav1.Object)
	if !ok1 || !ok2 {
		return false
	}
	switch obj.(type) {
	case *corev1.Pod, *corev1.Service, *corev1.Secret, *corev1.ConfigMap, *corev1.Namespace:
		return false // core kinds: no generation to go by, or status read
	}
	if _, ok := obj.(*unstructured.Unstructured); ok {
		return false // did not decode: not read anyway, but be plain
	}
	if o.GetGeneration() == 0 || o.GetGeneration() != n.GetGeneration() ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) {
		return false
	}
	if og, ok := old.(*gwv1.Gateway); ok {
		return slices.Equal(og.Status.Addresses, obj.(*gwv1.Gateway).Status.Addresses)
	}
	return true
}
