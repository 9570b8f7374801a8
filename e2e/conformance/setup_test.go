package conformance

import (
	"context"
	"io"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
)

// startLogged runs path until the test ends, its output to out rather
// than the test log.
func startLogged(t *testing.T, out io.Writer, path string, args ...string) {
	t.Helper()
	p, err := harness.Launch(out, nil, path, args...)
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
}

var gatewayClassGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}

func createGatewayClass(ctx context.Context, c *cluster.Cluster, obj map[string]any) error {
	_, err := c.Dynamic.Resource(gatewayClassGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	return err
}
