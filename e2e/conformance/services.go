package conformance

import (
	"context"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reconcileServices plays the cloud load balancer: a LoadBalancer
// Service's ingress is the IPs of its Ready pods. The proxies bind their
// pod IPs, so that is where a client reaches the Gateway.
//
// There is no EndpointSlice controller: the API server refuses loopback
// addresses in EndpointSlices ("may not be in the loopback range"), and
// the control plane resolves a Service without slices from the Ready pods
// its selector matches — the same pods a slice would list.
func (n *node) reconcileServices(ctx context.Context) {
	pods := n.pods.list()
	for _, svc := range n.services.list() {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Selector) == 0 || svc.DeletionTimestamp != nil {
			continue
		}
		var ingress []corev1.LoadBalancerIngress
		for _, p := range pods {
			if p.Namespace == svc.Namespace && p.DeletionTimestamp == nil && p.Status.PodIP != "" &&
				selectorMatches(svc.Spec.Selector, p) && podReady(p) {
				ingress = append(ingress, corev1.LoadBalancerIngress{IP: p.Status.PodIP})
			}
		}
		slices.SortFunc(ingress, func(a, b corev1.LoadBalancerIngress) int { return strings.Compare(a.IP, b.IP) })
		if len(ingress) == len(svc.Status.LoadBalancer.Ingress) && (len(ingress) == 0 || reflect.DeepEqual(svc.Status.LoadBalancer.Ingress, ingress)) {
			continue
		}
		s := svc.DeepCopy()
		s.Status.LoadBalancer.Ingress = ingress
		if _, err := n.cs.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			n.log.Warn("load balancer status", "service", s.Namespace+"/"+s.Name, "err", err)
		}
	}
}
