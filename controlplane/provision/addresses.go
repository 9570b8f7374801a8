package provision

import (
	"context"
	"encoding/json"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Addresses are the Gateway addresses a proxy Service offers: its load
// balancer's ingress IPs/hostnames for type LoadBalancer (none until the
// load balancer is ready), else its cluster IPs.
func Addresses(svc *corev1.Service) []gwapiv1.GatewayStatusAddress {
	var out []gwapiv1.GatewayStatusAddress
	add := func(t gwapiv1.AddressType, v string) {
		out = append(out, gwapiv1.GatewayStatusAddress{Type: &t, Value: v})
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			switch {
			case in.IP != "":
				add(gwapiv1.IPAddressType, in.IP)
			case in.Hostname != "":
				add(gwapiv1.HostnameAddressType, in.Hostname)
			}
		}
		return out
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if ip != corev1.ClusterIPNone {
			add(gwapiv1.IPAddressType, ip)
		}
	}
	return out
}

// writeAddresses sets Gateway.status.addresses with server-side apply
// under FieldManager, touching no other status field.
func (p *Provisioner) writeAddresses(ctx context.Context, gw *gwapiv1.Gateway, addrs []gwapiv1.GatewayStatusAddress) error {
	if addressesEqual(gw.Status.Addresses, addrs) {
		return nil
	}
	status := map[string]any{}
	if len(addrs) > 0 {
		status["addresses"] = addrs
	}
	patch := map[string]any{
		"apiVersion": gwapiv1.GroupVersion.String(),
		"kind":       "Gateway",
		"metadata":   map[string]any{"name": gw.Name, "namespace": gw.Namespace},
		"status":     status,
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = p.dyn.Resource(gatewayGVR).Namespace(gw.Namespace).Patch(ctx, gw.Name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func addressesEqual(a, b []gwapiv1.GatewayStatusAddress) bool {
	return slices.EqualFunc(a, b, func(x, y gwapiv1.GatewayStatusAddress) bool {
		return x.Value == y.Value && ptrValue(x.Type) == ptrValue(y.Type)
	})
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
