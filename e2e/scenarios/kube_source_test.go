package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/source/kube"
	"github.com/infergate/infergate/controlplane/status"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/e2e/cluster"
)

const objectiveYAML = `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: critical, namespace: {{.NS}}}
spec: {priority: 10, poolRef: {name: pool-{{.NS}}}}
`

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inputsRecorder keeps the latest inputs, counts deliveries and merges the
// changes noted with them.
type inputsRecorder struct {
	mu      sync.Mutex
	latest  *translate.Inputs
	calls   int
	changes translate.Changes
}

func (r *inputsRecorder) onChange(in *translate.Inputs, ch *translate.Changes) {
	r.mu.Lock()
	r.latest, r.calls = in, r.calls+1
	if ch != nil {
		r.changes.Merge(ch)
	}
	r.mu.Unlock()
}

func (r *inputsRecorder) get() (*translate.Inputs, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest, r.calls
}

// TestKubeSource drives the informer source, the status writer and NACK
// events in-process against a real API server that starts without the
// alpha inference CRDs.
func TestKubeSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const ns = "src"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	src := kube.New(c.Clientset, c.Dynamic, kube.Options{
		Debounce: 100 * time.Millisecond, DiscoveryInterval: 200 * time.Millisecond, Logger: log,
	})
	var rec inputsRecorder
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, rec.onChange) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("source: %v", err)
		}
	})
	fleet := fleetVars{NS: ns, Port: 8080, PodPort: 8000}
	applyYAML(ctx, t, c, kubeFleetYAML, fleet)
	eventually(t, func() error {
		in, _ := rec.get()
		if in == nil || len(in.Gateways) != 1 || len(in.HTTPRoutes) != 1 || len(in.InferencePools) != 1 || len(in.GatewayClasses) != 1 {
			return fmt.Errorf("inputs lack the fleet: %+v", in)
		}
		return nil
	})
	// Changes after the first inputs are noted for incremental
	// translation: a ConfigMap marks its namespace.
	if _, err := c.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "noted"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if !rec.changes.All && !rec.changes.Namespaces[ns] {
			return fmt.Errorf("changes noted since the first inputs = %+v, want namespace %s", rec.changes, ns)
		}
		return nil
	})

	t.Run("missing CRD is logged once and picked up when installed", func(t *testing.T) {
		time.Sleep(600 * time.Millisecond) // a few discovery polls
		n := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "not installed") && strings.Contains(line, "Resource=inferenceobjectives") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("missing InferenceObjective CRD logged %d times, want once:\n%s", n, logs.String())
		}
		if _, err := c.InstallCRDs(ctx, cluster.InferenceAlpha); err != nil {
			t.Fatal(err)
		}
		applyYAML(ctx, t, c, objectiveYAML, fleet)
		eventually(t, func() error {
			in, _ := rec.get()
			if len(in.InferenceObjectives) != 1 || in.InferenceObjectives[0].Spec.Priority == nil || *in.InferenceObjectives[0].Spec.Priority != 10 {
				return fmt.Errorf("objectives %+v", in.InferenceObjectives)
			}
			return nil
		})
	})

	t.Run("a burst of pod events is coalesced", func(t *testing.T) {
		_, before := rec.get()
		const pods = 20
		for i := 0; i < pods; i++ {
			if _, err := c.CreatePod(ctx, ns, fmt.Sprintf("p-%d", i), map[string]string{"app": "sim-" + ns}, fmt.Sprintf("127.0.1.%d", i+1), true); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, func() error {
			in, _ := rec.get()
			if len(in.Pods) != pods {
				return fmt.Errorf("%d pods in inputs, want %d", len(in.Pods), pods)
			}
			return nil
		})
		_, after := rec.get()
		// 40 API events (create + status each); without coalescing there
		// would be one delivery per event.
		if n := after - before; n >= pods {
			t.Fatalf("%d deliveries for %d pod events, want them coalesced", n, 2*pods)
		}
		t.Logf("%d deliveries for %d pod events", after-before, 2*pods)
	})

	t.Run("status writer: writes once, keeps other controllers' entries, survives a stale cache", func(t *testing.T) {
		w := status.NewWriter(c.Dynamic, translate.DefaultControllerName, log)
		in, _ := rec.get()
		out := translate.Translate(in, translate.Options{})
		n, err := w.Write(ctx, in, &out.Status)
		if err != nil || n == 0 {
			t.Fatalf("first write: %d updated, %v", n, err)
		}
		// A second write from the same (now stale) inputs hits conflicts,
		// re-reads and finds nothing to change.
		if n, err := w.Write(ctx, in, &out.Status); err != nil || n != 0 {
			t.Fatalf("rewrite from a stale cache: %d updated, %v", n, err)
		}
		// Another controller adds its entry to the route.
		route, u, err := getTyped[gwv1.HTTPRoute](ctx, c, "HTTPRoute", ns, "chat")
		if err != nil {
			t.Fatal(err)
		}
		route.Status.Parents = append(route.Status.Parents, gwv1.RouteParentStatus{
			ParentRef: gwv1.ParentReference{Name: "their-gw"}, ControllerName: "example.com/other",
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}},
		})
		u.Object["status"] = mustUnstructured(t, &route.Status)
		if _, err := c.Dynamic.Resource(kubeResources["HTTPRoute"]).Namespace(ns).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: "other"}); err != nil {
			t.Fatal(err)
		}
		// The route loses its backend: our entry changes, theirs stays.
		deleteObject(ctx, t, c, "InferencePool", ns, "pool-"+ns)
		eventually(t, func() error {
			in, _ := rec.get()
			if len(in.InferencePools) != 0 {
				return fmt.Errorf("pool still in inputs")
			}
			out := translate.Translate(in, translate.Options{})
			if _, err := w.Write(ctx, in, &out.Status); err != nil {
				return err
			}
			if err := routeParent(ctx, c, ns, "chat", "ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"); err != nil {
				return err
			}
			r, _, err := getTyped[gwv1.HTTPRoute](ctx, c, "HTTPRoute", ns, "chat")
			if err != nil {
				return err
			}
			for _, p := range r.Status.Parents {
				if p.ControllerName == "example.com/other" {
					return nil
				}
			}
			return fmt.Errorf("the other controller's entry is gone: %+v", r.Status.Parents)
		})
	})

	t.Run("a NACK becomes a Warning Event on the Gateway", func(t *testing.T) {
		ev := status.NewNackEvents(c.Clientset, "infergate-test")
		defer ev.Shutdown()
		in, _ := rec.get()
		ev.Observe(in)
		ev.Nack(ns+"/gw", "proxy-1", "type.googleapis.com/infergate.snapshot.v1.Route", "route kube/chat: bad regex")
		eventually(t, func() error {
			list, err := c.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.Type == corev1.EventTypeWarning && e.Reason == status.ReasonConfigRejected &&
					e.InvolvedObject.Kind == "Gateway" && e.InvolvedObject.Name == "gw" && e.InvolvedObject.UID == in.Gateways[0].UID &&
					strings.Contains(e.Message, "Route") && strings.Contains(e.Message, "bad regex") {
					return nil
				}
			}
			return fmt.Errorf("no NACK event among %d events", len(list.Items))
		})
	})
}

func mustUnstructured(t *testing.T, v any) map[string]any {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
