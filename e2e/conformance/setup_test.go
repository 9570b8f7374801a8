package conformance

import (
	"context"
	"io"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/gateway-api/pkg/features"

	"github.com/infergate/infergate/e2e/cluster"
)

func startLogged(t *testing.T, out io.Writer, path string, args ...string) *process {
	t.Helper()
	p, err := startProcess(out, nil, path, args...)
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return p
}

var gatewayClassGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}

func createGatewayClass(ctx context.Context, c *cluster.Cluster, obj map[string]any) error {
	_, err := c.Dynamic.Resource(gatewayClassGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	return err
}

func sortedFeatures(s sets.Set[features.FeatureName]) []features.FeatureName {
	return slices.Sorted(func(yield func(features.FeatureName) bool) {
		for f := range s {
			if !yield(f) {
				return
			}
		}
	})
}
