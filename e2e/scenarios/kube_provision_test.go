package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/e2e/cluster"
)

const provisionGatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: prov}
spec:
  gatewayClassName: infergate
  allowedListeners: {namespaces: {from: Same}}
  listeners: [{name: http, protocol: HTTP, port: 8080}]
`

// provisionListenerSetYAML adds a listener on a port the Gateway itself
// does not list.
const provisionListenerSetYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: prov}
spec:
  parentRef: {name: gw}
  listeners: [{name: api, protocol: HTTP, port: 9090, hostname: api.example.com}]
`

// TestKubeProvisioning: the control-plane binary with --provision-proxies
// (as the chart runs it) creates a Gateway's proxy objects, wired for TLS
// and token auth to itself, gives a ListenerSet's listener a Service port
// (and the set its status), and removes them with the Gateway. The
// provisioner's own behaviour is covered in e2e/deploycheck.
func TestKubeProvisioning(t *testing.T) {
	ctx := context.Background()
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const leaseNS = "infergate-system"
	for _, ns := range []string{leaseNS, "prov"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	startReplica(t, "cp", c, leaseNS, "--provision-proxies", "--proxy-image", "example.com/infergate/proxy:test",
		"--proxy-xds-address", "infergate-controlplane.infergate-system.svc:18000")
	applyYAML(ctx, t, c, provisionGatewayYAML, nil)

	name := provision.ObjectName("gw", "infergate")
	apps := c.Clientset.AppsV1().Deployments("prov")
	eventually(t, func() error {
		d, err := apps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod := d.Spec.Template.Spec
		args := strings.Join(pod.Containers[0].Args, " ")
		for _, want := range []string{"--gateway=prov/gw", "--xds-address=infergate-controlplane.infergate-system.svc:18000", "--xds-ca-file=", "--xds-token-file="} {
			if !strings.Contains(args, want) {
				return fmt.Errorf("proxy args %q lack %q", args, want)
			}
		}
		if pod.Containers[0].Image != "example.com/infergate/proxy:test" || pod.ServiceAccountName != name {
			return fmt.Errorf("image %q, service account %q", pod.Containers[0].Image, pod.ServiceAccountName)
		}
		return nil
	})
	for _, get := range []func() error{
		func() error {
			_, err := c.Clientset.CoreV1().Services("prov").Get(ctx, name, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := c.Clientset.CoreV1().ServiceAccounts("prov").Get(ctx, name, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := c.Clientset.AutoscalingV2().HorizontalPodAutoscalers("prov").Get(ctx, name, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := c.Clientset.PolicyV1().PodDisruptionBudgets("prov").Get(ctx, name, metav1.GetOptions{})
			return err
		},
	} {
		eventually(t, get)
	}

	// A ListenerSet's listener port reaches the Service through the
	// translation (the provisioner reads only the Gateway itself).
	applyYAML(ctx, t, c, provisionListenerSetYAML, nil)
	eventually(t, func() error {
		svc, err := c.Clientset.CoreV1().Services("prov").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var ports []int32
		for _, p := range svc.Spec.Ports {
			ports = append(ports, p.Port)
		}
		if !slices.Equal(ports, []int32{8080, 9090}) {
			return fmt.Errorf("service ports %v, want [8080 9090]", ports)
		}
		return nil
	})
	eventually(t, func() error {
		ls, _, err := getTyped[gwv1.ListenerSet](ctx, c, "ListenerSet", "prov", "extra")
		if err != nil {
			return err
		}
		return wantCondition(ls.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed")
	})

	deleteObject(ctx, t, c, "Gateway", "prov", "gw")
	eventually(t, func() error {
		if _, err := apps.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment still there after the Gateway was deleted (err %v)", err)
		}
		return nil
	})
}
