package cluster_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/infergate/infergate/e2e/cluster"
)

// expectedCRDs is every CRD a full Start installs, by set.
var expectedCRDs = map[cluster.CRDSet][]string{
	cluster.GatewayAPI: {
		"gatewayclasses.gateway.networking.k8s.io",
		"gateways.gateway.networking.k8s.io",
		"httproutes.gateway.networking.k8s.io",
		"referencegrants.gateway.networking.k8s.io",
		"backendtlspolicies.gateway.networking.k8s.io",
		"listenersets.gateway.networking.k8s.io",
	},
	cluster.InferencePoolV1: {"inferencepools.inference.networking.k8s.io"},
	cluster.InferenceAlpha: {
		"inferenceobjectives.inference.networking.x-k8s.io",
		"inferencemodelrewrites.inference.networking.x-k8s.io",
	},
	cluster.InferenceLegacy: {
		"inferencepools.inference.networking.x-k8s.io",
		"inferencemodels.inference.networking.x-k8s.io",
	},
}

// TestLoadCRDs checks each set reads exactly its CRDs from the module cache
// (no API server needed).
func TestLoadCRDs(t *testing.T) {
	ctx := context.Background()
	for set, want := range expectedCRDs {
		crds, err := cluster.LoadCRDs(ctx, false, set)
		if err != nil {
			t.Fatalf("%s: %v", set, err)
		}
		var got []string
		for _, c := range crds {
			got = append(got, c.Name)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got CRDs %v, want %v", set, got, want)
		}
	}
	// The versions the controllers are written against must be served.
	served := map[string]string{
		"inferencepools.inference.networking.k8s.io":           "v1",
		"inferencepools.inference.networking.x-k8s.io":         "v1alpha2",
		"inferencemodels.inference.networking.x-k8s.io":        "v1alpha2",
		"inferenceobjectives.inference.networking.x-k8s.io":    "v1alpha2",
		"inferencemodelrewrites.inference.networking.x-k8s.io": "v1alpha2",
		"httproutes.gateway.networking.k8s.io":                 "v1",
		"backendtlspolicies.gateway.networking.k8s.io":         "v1",
		"listenersets.gateway.networking.k8s.io":               "v1",
	}
	crds, err := cluster.LoadCRDs(ctx, false, cluster.AllCRDs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		want, ok := served[c.Name]
		if ok && !servesVersion(c, want) {
			t.Errorf("%s does not serve %s", c.Name, want)
		}
	}
}

func servesVersion(c *apiextensionsv1.CustomResourceDefinition, v string) bool {
	for _, ver := range c.Spec.Versions {
		if ver.Name == v && ver.Served {
			return true
		}
	}
	return false
}

// TestPinnedVersions keeps the CRD versions in step with the Go modules the
// workspace builds against.
func TestPinnedVersions(t *testing.T) {
	for mod, want := range map[string]string{
		cluster.GatewayAPIModule:   cluster.GatewayAPIVersion,
		cluster.InferenceExtModule: cluster.InferencePoolVersion,
	} {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", mod).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", mod, err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: workspace uses %s, CRDs are read from %s", mod, got, want)
		}
	}
}

func TestCluster(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	t.Logf("cluster started in %s (warm start when binaries are cached)", c.StartupTime.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The kubeconfig file is what binaries under test get.
	fileCfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := apiextclient.NewForConfig(fileCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range expectedCRDs {
		for _, name := range names {
			crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("CRD %s: %v", name, err)
			}
			if !established(crd) {
				t.Errorf("CRD %s is not Established", name)
			}
		}
	}

	const ns = "cluster-test"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pool := roundTrip(ctx, t, c, schema.GroupVersionResource{Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"}, ns, map[string]any{
		"apiVersion": "inference.networking.k8s.io/v1",
		"kind":       "InferencePool",
		"metadata":   map[string]any{"name": "pool", "namespace": ns},
		"spec": map[string]any{
			"selector":    map[string]any{"matchLabels": map[string]any{"app": "llm"}},
			"targetPorts": []any{map[string]any{"number": int64(8000)}},
		},
	})
	if port, _, _ := unstructured.NestedSlice(pool.Object, "spec", "targetPorts"); len(port) != 1 {
		t.Errorf("InferencePool targetPorts = %v", port)
	}
	route := roundTrip(ctx, t, c, schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}, ns, map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "HTTPRoute",
		"metadata":   map[string]any{"name": "route", "namespace": ns},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "gw"}},
			"rules": []any{map[string]any{
				"backendRefs": []any{map[string]any{
					"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool",
				}},
			}},
		},
	})
	if rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules"); len(rules) != 1 {
		t.Errorf("HTTPRoute rules = %v", rules)
	}

	testPods(ctx, t, c, ns)
}

// roundTrip creates obj with the dynamic client and reads it back.
func roundTrip(ctx context.Context, t *testing.T, c *cluster.Cluster, gvr schema.GroupVersionResource, ns string, obj map[string]any) *unstructured.Unstructured {
	t.Helper()
	res := c.Dynamic.Resource(gvr).Namespace(ns)
	u := &unstructured.Unstructured{Object: obj}
	if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", gvr.Resource, err)
	}
	got, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", gvr.Resource, err)
	}
	if got.GetUID() == "" || got.GetGeneration() != 1 {
		t.Errorf("%s read back with uid %q generation %d", gvr.Resource, got.GetUID(), got.GetGeneration())
	}
	return got
}

func testPods(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string) {
	pods := c.Clientset.CoreV1().Pods(ns)
	pod, err := c.CreatePod(ctx, ns, "llm-0", map[string]string{"app": "llm"}, "127.0.0.2", true)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != "127.0.0.2" || !podReady(pod) {
		t.Fatalf("pod status after create: %+v", pod.Status)
	}
	if pod, err = c.SetPodReady(ctx, ns, "llm-0", false); err != nil {
		t.Fatal(err)
	}
	if podReady(pod) || pod.Status.PodIP != "127.0.0.2" {
		t.Fatalf("pod still ready or lost its IP: %+v", pod.Status)
	}

	if err := c.TerminatePod(ctx, ns, "llm-0"); err != nil {
		t.Fatal(err)
	}
	if pod, err = pods.Get(ctx, "llm-0", metav1.GetOptions{}); err != nil || pod.DeletionTimestamp == nil {
		t.Fatalf("terminating pod: err=%v deletionTimestamp=%v", err, pod.GetDeletionTimestamp())
	}
	if err := c.DeletePod(ctx, ns, "llm-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "llm-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still present after DeletePod: %v", err)
	}

	// A plain (never-held) pod also goes away at once: it has no node.
	if _, err := c.CreatePod(ctx, ns, "llm-1", nil, "127.0.0.3", true); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePod(ctx, ns, "llm-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "llm-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod llm-1 still present after DeletePod: %v", err)
	}
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func podReady(pod *corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
