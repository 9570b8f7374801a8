package deploycheck_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/e2e/cluster"
)

const (
	controllerName = "infergate.dev/gateway-controller"
	proxyImage     = "ghcr.io/infergate/proxy:e2e"
	xdsAddress     = "ig-infergate-controlplane.infergate-system.svc:18000"
)

// testCA stands in for the control plane's CA certificate (the API server
// does not parse it).
const testCA = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

var (
	gatewaysGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	classesGVR  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
)

// TestProvision runs the provisioner against a real kube-apiserver: a
// Gateway of our class gets its proxy objects with labels, annotations and
// sizes from its infrastructure and parameters; parameter changes update
// them; the Service's load-balancer address reaches Gateway.status; a
// Gateway of another class gets nothing, one with bad parameters a Warning
// Event, one leaving the class loses its objects; deleting the Gateway removes
// everything (envtest has no garbage collector, so this is the
// provisioner's own clean-up).
func TestProvision(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, ns := range []string{"infergate-system", "team-a"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	cms := c.Clientset.CoreV1().ConfigMaps("infergate-system")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "class-params"},
		Data:       map[string]string{"replicas": "2", "maxReplicas": "8"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(ctx, t, c, classesGVR, "", map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": "infergate"},
		"spec": map[string]any{
			"controllerName": controllerName,
			"parametersRef":  map[string]any{"group": "", "kind": "ConfigMap", "name": "class-params", "namespace": "infergate-system"},
		},
	})
	create(ctx, t, c, classesGVR, "", map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": "other"},
		"spec":     map[string]any{"controllerName": "example.com/other-controller"},
	})

	// One worker: Gateways are handled in the order their events come, so
	// "the other class's Gateway got nothing" can be checked after a later
	// Gateway of ours was provisioned, without sleeping.
	prov := provision.New(c.Clientset, c.Dynamic, provision.Options{
		ControllerName: controllerName, Image: proxyImage, XDSAddress: xdsAddress, Workers: 1,
		XDSCACert: []byte(testCA), TokenAudience: "infergate.dev/xds",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- prov.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("provisioner: %v", err)
		}
	})

	const ns = "team-a"
	start := time.Now()
	create(ctx, t, c, gatewaysGVR, ns, gateway("chat", "infergate", map[string]any{
		"labels":      map[string]any{"team": "a"},
		"annotations": map[string]any{"example.com/cost-center": "42"},
	}))
	name := provision.ObjectName("chat", "infergate")
	// All six objects, applied in order (the PDB last).
	waitFor(ctx, t, "6 provisioned objects", func() (any, bool) { return nil, countProvisioned(ctx, t, c, ns, "chat") == 6 })
	dep, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 {
		t.Errorf("Deployment replicas = %d, want 2 (class parameters)", *dep.Spec.Replicas)
	}
	t.Logf("Gateway provisioned in %s", time.Since(start).Round(time.Millisecond))
	if dep.Labels["team"] != "a" || dep.Spec.Template.Labels["team"] != "a" || dep.Annotations["example.com/cost-center"] != "42" {
		t.Errorf("infrastructure labels/annotations not propagated: %v %v %v", dep.Labels, dep.Spec.Template.Labels, dep.Annotations)
	}
	if len(dep.OwnerReferences) != 1 || dep.OwnerReferences[0].Kind != "Gateway" || dep.OwnerReferences[0].Name != "chat" {
		t.Errorf("owner references = %v", dep.OwnerReferences)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--gateway=team-a/chat", "--xds-address=" + xdsAddress} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("proxy args %v lack %s", ctr.Args, want)
		}
	}
	// The listener port, and the probe port the readiness probe names.
	if ctr.Image != proxyImage || len(ctr.Ports) != 2 || ctr.Ports[0].ContainerPort != 8080 ||
		ctr.Ports[1].Name != "health" || ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil ||
		ctr.ReadinessProbe.HTTPGet.Port.StrVal != "health" || !slices.Contains(ctr.Args, fmt.Sprintf("--health-address=0.0.0.0:%d", ctr.Ports[1].ContainerPort)) {
		t.Errorf("proxy container image %s ports %v readiness %v args %v", ctr.Image, ctr.Ports, ctr.ReadinessProbe, ctr.Args)
	}
	if !slices.Contains(ctr.Args, "--xds-token-file=/var/run/secrets/infergate.dev/xds/token") || len(dep.Spec.Template.Spec.Volumes) != 2 {
		t.Errorf("xDS credentials not mounted: args %v volumes %v", ctr.Args, dep.Spec.Template.Spec.Volumes)
	}
	if ca, err := c.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || ca.Data[provision.CAKey] != testCA {
		t.Errorf("CA ConfigMap: %v", err)
	}
	svc, err := c.Clientset.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Labels["team"] != "a" {
		t.Errorf("Service type %s ports %v labels %v", svc.Spec.Type, svc.Spec.Ports, svc.Labels)
	}
	hpa, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 8 || hpa.Spec.ScaleTargetRef.Name != name {
		t.Errorf("HPA min %d max %d target %s", *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, hpa.Spec.ScaleTargetRef.Name)
	}
	if _, err := c.Clientset.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := c.Clientset.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}

	// The cloud's load balancer (played by the test) gets an address; it
	// reaches the Gateway's status.
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	if _, err := c.Clientset.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAddresses(ctx, t, c, ns, "chat", "IPAddress=203.0.113.7")

	// Class parameters change: more replicas, HPA minimum follows.
	if _, err := cms.Update(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "class-params"},
		Data:       map[string]string{"replicas": "3", "maxReplicas": "8"},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "HPA minReplicas 3 and Deployment replicas 3", func() (any, bool) {
		h, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		d, derr := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return nil, err == nil && derr == nil && *h.Spec.MinReplicas == 3 && *d.Spec.Replicas == 3
	})

	// The HPA scales the Deployment (played by the test through the scale
	// subresource, as the HPA controller does); a later apply keeps its
	// choice because it is within the HPA's bounds.
	scale, err := c.Clientset.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 6
	if _, err := c.Clientset.AppsV1().Deployments(ns).UpdateScale(ctx, name, scale, metav1.UpdateOptions{FieldManager: "hpa-controller"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Update(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "class-params"},
		Data:       map[string]string{"replicas": "3", "maxReplicas": "8", "cpuTarget": "70"},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "HPA CPU target 70", func() (any, bool) {
		h, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		return nil, err == nil && *h.Spec.Metrics[0].Resource.Target.AverageUtilization == 70
	})
	if d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 6 {
		t.Errorf("after re-provisioning, the HPA's 6 replicas became %v (err %v)", d.Spec.Replicas, err)
	}

	// The Gateway's own parameters override the class's: a ClusterIP
	// Service and no autoscaling; its address becomes the cluster IP.
	if _, err := c.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "chat-params"},
		Data:       map[string]string{"serviceType": "ClusterIP", "autoscaling": "false", "replicas": "1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gw, err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Get(ctx, "chat", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedMap(gw.Object, map[string]any{"group": "", "kind": "ConfigMap", "name": "chat-params"},
		"spec", "infrastructure", "parametersRef"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Update(ctx, gw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc = waitFor(ctx, t, "ClusterIP Service", func() (*corev1.Service, bool) {
		s, err := c.Clientset.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return s, err == nil && s.Spec.Type == corev1.ServiceTypeClusterIP
	})
	waitFor(ctx, t, "HPA removed and 1 replica", func() (any, bool) {
		_, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		d, derr := c.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return nil, apierrors.IsNotFound(err) && derr == nil && *d.Spec.Replicas == 1
	})
	waitAddresses(ctx, t, c, ns, "chat", "IPAddress="+svc.Spec.ClusterIP)
	// The provisioner owns only status.addresses on the Gateway.
	gw, err = c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Get(ctx, "chat", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range gw.GetManagedFields() {
		if mf.Manager == provision.FieldManager && mf.Subresource != "status" {
			t.Errorf("provisioner manages non-status fields of the Gateway: %s", mf.FieldsV1.Raw)
		}
	}

	// A Gateway of another class, then one of ours: once ours is
	// provisioned, the other's event has been handled too.
	create(ctx, t, c, gatewaysGVR, ns, gateway("foreign", "other", nil))
	create(ctx, t, c, gatewaysGVR, ns, gateway("marker", "infergate", nil))
	waitFor(ctx, t, "marker Deployment", func() (any, bool) {
		_, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, provision.ObjectName("marker", "infergate"), metav1.GetOptions{})
		return nil, err == nil
	})
	if n := countProvisioned(ctx, t, c, ns, "foreign"); n != 0 {
		t.Errorf("a Gateway of another class got %d provisioned objects", n)
	}

	// Parameters with a typo: nothing provisioned, a Warning Event says why.
	if _, err := c.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "typo-params"},
		Data:       map[string]string{"replica": "3"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(ctx, t, c, gatewaysGVR, ns, gateway("typo", "infergate", map[string]any{
		"parametersRef": map[string]any{"group": "", "kind": "ConfigMap", "name": "typo-params"},
	}))
	ev := waitFor(ctx, t, "InvalidParameters event on Gateway typo", func() (*corev1.Event, bool) {
		l, err := c.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=typo"})
		if err != nil {
			return nil, false
		}
		for i := range l.Items {
			if l.Items[i].Reason == provision.ReasonInvalidParameters {
				return &l.Items[i], true
			}
		}
		return nil, false
	})
	t.Logf("event: %s %s: %s", ev.Type, ev.Reason, ev.Message)
	if n := countProvisioned(ctx, t, c, ns, "typo"); n != 0 {
		t.Errorf("Gateway with invalid parameters got %d objects", n)
	}

	// A Gateway that moves to another class loses its proxies.
	create(ctx, t, c, gatewaysGVR, ns, gateway("mover", "infergate", nil))
	waitFor(ctx, t, "mover provisioned", func() (any, bool) { return nil, countProvisioned(ctx, t, c, ns, "mover") == 6 })
	mover, err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Get(ctx, "mover", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(mover.Object, "other", "spec", "gatewayClassName"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Update(ctx, mover, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "mover's objects removed", func() (any, bool) { return nil, countProvisioned(ctx, t, c, ns, "mover") == 0 })

	// Deleting the Gateway removes everything provisioned for it.
	if err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Delete(ctx, "chat", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "chat's objects deleted", func() (any, bool) {
		return nil, countProvisioned(ctx, t, c, ns, "chat") == 0
	})
	if n := countProvisioned(ctx, t, c, ns, "marker"); n != 6 {
		t.Errorf("marker has %d provisioned objects, want 6", n)
	}
}

func gateway(name, class string, infra map[string]any) map[string]any {
	spec := map[string]any{
		"gatewayClassName": class,
		"listeners":        []any{map[string]any{"name": "http", "port": int64(8080), "protocol": "HTTP"}},
	}
	if infra != nil {
		spec["infrastructure"] = infra
	}
	return map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}
}

func create(ctx context.Context, t *testing.T, c *cluster.Cluster, gvr schema.GroupVersionResource, ns string, obj map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	var err error
	if ns == "" {
		_, err = c.Dynamic.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
	} else {
		_, err = c.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// countProvisioned counts the objects of every provisioned kind labelled
// for Gateway gw.
func countProvisioned(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, gw string) int {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: provision.LabelGateway + "=" + gw}
	n := 0
	for _, count := range []func() (int, error){
		func() (int, error) {
			l, err := c.Clientset.AppsV1().Deployments(ns).List(ctx, sel)
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := c.Clientset.CoreV1().Services(ns).List(ctx, sel)
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := c.Clientset.CoreV1().ServiceAccounts(ns).List(ctx, sel)
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, sel)
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := c.Clientset.PolicyV1().PodDisruptionBudgets(ns).List(ctx, sel)
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := c.Clientset.CoreV1().ConfigMaps(ns).List(ctx, sel)
			return len(l.Items), err
		},
	} {
		k, err := count()
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

func waitAddresses(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name, want string) {
	t.Helper()
	waitFor(ctx, t, "Gateway status.addresses "+want, func() (any, bool) {
		u, err := c.Dynamic.Resource(gatewaysGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, false
		}
		addrs, _, _ := unstructured.NestedSlice(u.Object, "status", "addresses")
		var got []string
		for _, a := range addrs {
			m := a.(map[string]any)
			got = append(got, fmt.Sprintf("%v=%v", m["type"], m["value"]))
		}
		return nil, len(got) == 1 && got[0] == want
	})
}

// waitFor polls check until it reports done (functional timeout 30s).
func waitFor[T any](ctx context.Context, t *testing.T, what string, check func() (T, bool)) T {
	t.Helper()
	var last T
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		v, ok := check()
		last = v
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return last
}
