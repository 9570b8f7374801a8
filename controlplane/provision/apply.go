package provision

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kinds are the provisioned kinds with their resources, in apply order.
var kinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"ServiceAccount", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
	{"ConfigMap", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
	{"Deployment", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
	{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
	{"HorizontalPodAutoscaler", schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}},
	{"PodDisruptionBudget", schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}},
}

func gvrOf(kind string) (schema.GroupVersionResource, error) {
	for _, k := range kinds {
		if k.kind == kind {
			return k.gvr, nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("provision: no resource for kind %s", kind)
}

// ApplyConfig turns a rendered object into the configuration sent with
// server-side apply: no status and no zero creationTimestamp, so this field
// manager claims only the fields it means to set.
func ApplyConfig(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	if s, ok, _ := unstructured.NestedMap(u.Object, "spec", "strategy"); ok && len(s) == 0 {
		unstructured.RemoveNestedField(u.Object, "spec", "strategy")
	}
	return u, nil
}
