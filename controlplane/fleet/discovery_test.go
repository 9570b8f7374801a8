package fleet

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// The peers are the ready endpoints of the Service's slices on the gRPC
// port (a slice's only port, else the one named grpc-xds), this replica's
// pod left out, each address once.
func TestPeerAddrs(t *testing.T) {
	yes, no := true, false
	port := func(name string, n int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &n}
	}
	ep := func(ip, pod string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
	}
	slicesIn := []*discoveryv1.EndpointSlice{
		{Ports: []discoveryv1.EndpointPort{port("admin", 18001), port(PeerPortName, 18000)},
			Endpoints: []discoveryv1.Endpoint{ep("10.0.0.1", "cp-1", &yes), ep("10.0.0.2", "cp-2", &no), ep("10.0.0.3", "me", &yes), ep("10.0.0.4", "cp-4", nil)}},
		{Ports: []discoveryv1.EndpointPort{port("", 19000)},
			Endpoints: []discoveryv1.Endpoint{ep("10.0.0.5", "cp-5", &yes), ep("10.0.0.1", "cp-1", &yes)}},
		{Ports: []discoveryv1.EndpointPort{port("admin", 18001), port("metrics", 9090)},
			Endpoints: []discoveryv1.Endpoint{ep("10.0.0.6", "cp-6", &yes)}},
	}
	got := PeerAddrs(slicesIn, "me")
	want := []string{"10.0.0.1:18000", "10.0.0.1:19000", "10.0.0.4:18000", "10.0.0.5:19000"}
	if !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
}
