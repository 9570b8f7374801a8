package provision

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  corev1.Service
		want string
	}{
		{"load balancer pending", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.0.0.1"}}, "[]"},
		{"load balancer ready", corev1.Service{
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.0.0.1"},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
				{IP: "203.0.113.7"}, {Hostname: "lb.example.com"},
			}}},
		}, "[IPAddress=203.0.113.7 Hostname=lb.example.com]"},
		{"cluster IP, dual stack", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1", "fd00::1"}}}, "[IPAddress=10.0.0.1 IPAddress=fd00::1]"},
		{"node port", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.0.0.2"}}, "[IPAddress=10.0.0.2]"},
		{"headless", corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone}}, "[]"},
	} {
		var got []string
		for _, a := range Addresses(&tc.svc) {
			got = append(got, fmt.Sprintf("%s=%s", *a.Type, a.Value))
		}
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("%s: Addresses = %s, want %s", tc.name, s, tc.want)
		}
	}
}
