package conformance

import (
	"context"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// reconcileServices plays the cloud load balancer: a LoadBalancer
// Service's ingress is the IPs of its Ready pods. The proxies bind their
// pod IPs, so that is where a client reaches the Gateway. A Service asking
// for a static address (spec.loadBalancerIP) gets it when it is in the
// load balancer's pool — the address then listens on the Service's ports
// and passes connections to the Ready pods (staticLB) — and stays pending
// (no ingress) when it is not, as on a cloud.
func (n *node) reconcileServices(ctx context.Context) {
	pods := n.pods.list()
	type pending struct {
		svc     *corev1.Service
		ingress []corev1.LoadBalancerIngress
		static  []string // frontends the static address needs
	}
	var all []pending
	frontends := map[string][]string{}
	for _, svc := range n.services.list() {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Selector) == 0 || svc.DeletionTimestamp != nil {
			continue
		}
		var ready []*corev1.Pod
		for _, p := range pods {
			if p.Namespace == svc.Namespace && p.DeletionTimestamp == nil && p.Status.PodIP != "" &&
				selectorMatches(svc.Spec.Selector, p) && podReady(p) {
				ready = append(ready, p)
			}
		}
		pd := pending{svc: svc}
		switch ip := svc.Spec.LoadBalancerIP; {
		case ip == "":
			for _, p := range ready {
				pd.ingress = append(pd.ingress, corev1.LoadBalancerIngress{IP: p.Status.PodIP})
			}
		case !n.lb.owns(ip):
			n.log.Debug("load balancer: requested address is not in the pool", "service", svc.Namespace+"/"+svc.Name, "ip", ip)
		case len(ready) > 0:
			for _, sp := range svc.Spec.Ports {
				addr := hostPort(ip, sp.Port)
				for _, p := range ready {
					frontends[addr] = append(frontends[addr], hostPort(p.Status.PodIP, targetPort(sp, p)))
				}
				pd.static = append(pd.static, addr)
			}
			pd.ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		}
		all = append(all, pd)
	}
	up := n.lb.sync(frontends)
	for _, pd := range all {
		for _, addr := range pd.static {
			if !up[addr] {
				pd.ingress = nil
			}
		}
		svc, ingress := pd.svc, pd.ingress
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

// targetPort is the pod port a Service port sends to: a number, or the
// pod's container port of that name, else the Service port itself.
func targetPort(sp corev1.ServicePort, p *corev1.Pod) int32 {
	switch {
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal
	case sp.TargetPort.Type == intstr.String:
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return cp.ContainerPort
				}
			}
		}
	}
	return sp.Port
}

// Labels of the EndpointSlices the node writes.
const (
	sliceServiceLabel   = "kubernetes.io/service-name"
	sliceManagedByLabel = "endpointslice.kubernetes.io/managed-by"
	sliceManagedBy      = "conformance.infergate.dev"
)

// reconcileSlices plays the EndpointSlice controller for tests that watch
// a Service's endpoints come and go (the Inference Extension suite's
// fail-open test waits for its picker Service's slices to empty and fill
// again). The API server refuses loopback IP addresses in slices, so the
// slices hold the pods by name (address type FQDN); the control plane,
// which cannot dial names, resolves such a Service from its selector,
// which picks the same pods.
func (n *node) reconcileSlices(ctx context.Context) {
	pods := n.pods.list()
	want := map[string]*discoveryv1.EndpointSlice{}
	for _, svc := range n.services.list() {
		if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName || svc.DeletionTimestamp != nil {
			continue
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-harness",
				Labels: map[string]string{sliceServiceLabel: svc.Name, sliceManagedByLabel: sliceManagedBy}},
			AddressType: discoveryv1.AddressTypeFQDN,
		}
		var matched []*corev1.Pod
		for _, p := range pods {
			if p.Namespace == svc.Namespace && p.DeletionTimestamp == nil && p.Status.PodIP != "" && selectorMatches(svc.Spec.Selector, p) {
				matched = append(matched, p)
			}
		}
		slices.SortFunc(matched, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		for _, sp := range svc.Spec.Ports {
			port := sp.Port
			if len(matched) > 0 {
				port = targetPort(sp, matched[0])
			}
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: new(sp.Name), Protocol: new(sp.Protocol), Port: new(port)})
		}
		for _, p := range matched {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{p.Name + "." + p.Namespace + ".pod.cluster.local"},
				Conditions: discoveryv1.EndpointConditions{Ready: new(podReady(p))},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
			})
		}
		want[s.Namespace+"/"+s.Name] = s
	}
	have := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range n.slices.list() {
		if s.Labels[sliceManagedByLabel] == sliceManagedBy {
			have[s.Namespace+"/"+s.Name] = s
		}
	}
	for key, s := range have {
		if _, ok := want[key]; !ok {
			if err := n.cs.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				n.log.Warn("endpoint slice", "slice", key, "err", err)
			}
		}
	}
	for key, s := range want {
		cur := have[key]
		var err error
		switch {
		case cur == nil:
			_, err = n.cs.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil // the informer has not seen it yet
			}
		case !reflect.DeepEqual(cur.Endpoints, s.Endpoints) || !reflect.DeepEqual(cur.Ports, s.Ports):
			upd := cur.DeepCopy()
			upd.Endpoints, upd.Ports = s.Endpoints, s.Ports
			_, err = n.cs.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				err = nil
			}
		}
		if err != nil {
			n.log.Warn("endpoint slice", "slice", key, "err", err)
		}
	}
}
