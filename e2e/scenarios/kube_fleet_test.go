package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// TestKubeFleetPeers: two control-plane replicas in Kubernetes mode relay
// over TLS with a token of their own ServiceAccount (reviewed with
// TokenReview), and so a proxy connected to one replica gets the sends of
// a proxy connected to the other. A proxy's token cannot relay. Each
// replica is listed among its own peers and notices. The replicas also
// follow their Service's EndpointSlices (--fleet-peer-service): slices
// may not name loopback addresses, so the peers found there are
// documentation addresses nobody answers on, and the test checks that the
// ready ones are taken and the others are not.
func TestKubeFleetPeers(t *testing.T) {
	ctx := context.Background()
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const leaseNS, cpSA, svc = "infergate-system", "infergate-system/infergate-controlplane", "infergate-controlplane"
	for _, ns := range []string{leaseNS, "sec-a", "sec-b"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	applyYAML(ctx, t, c, securityGatewaysYAML, nil)
	cpToken := serviceAccountToken(ctx, t, c, cpSA, xdsauth.DefaultAudience)
	xds1 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	xds2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	peerArgs := []string{"--fleet-peers", xds1 + "," + xds2, "--fleet-peer-service", svc,
		"--fleet-peer-token-file", cpToken, "--fleet-keys-push-interval", "50ms"}
	createPeerService(ctx, t, c, leaseNS, svc)
	r1 := startReplica(t, "cp-1", c, leaseNS, append([]string{"--xds-address", xds1}, peerArgs...)...)
	r2 := startReplica(t, "cp-2", c, leaseNS, append([]string{"--xds-address", xds2}, peerArgs...)...)
	caFile := xdsCAFile(ctx, t, c, leaseNS)
	proxyTok := readFile(t, proxyToken(ctx, t, c, "sec-a/gw", xdsauth.DefaultAudience))

	eventually(t, func() error {
		for _, r := range []*replica{r1, r2} {
			if !strings.Contains(r.proc.Logs(), "peer address is this replica") {
				return fmt.Errorf("%s has not noticed its own address among its peers", r.name)
			}
		}
		return nil
	})

	// From the slices, only the ready endpoint: 192.0.2.10 on the gRPC
	// port.
	eventually(t, func() error {
		for _, r := range []*replica{r1, r2} {
			if !strings.Contains(r.proc.Logs(), `peers=[192.0.2.10:18000]`) {
				return fmt.Errorf("%s has not found the ready peer of its Service's EndpointSlices:\n%s", r.name, grepLines(r.proc.Logs(), "fleet: peers"))
			}
		}
		return nil
	})

	for _, r := range []*replica{r1, r2} {
		// Proxies are admitted once a replica has read their Gateway.
		harness.WaitHTTP(ctx, t, "http://"+r.admin+"/readyz", syncTimeout)
	}
	auth := func(ctx context.Context, tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	sctx, cancel := context.WithTimeout(auth(ctx, proxyTok), 30*time.Second)
	defer cancel()
	a, err := fleetv1.NewPrefixKeysClient(dialTLS(t, xds1, caFile)).Exchange(sctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fleetv1.NewPrefixKeysClient(dialTLS(t, xds2, caFile)).Exchange(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Send(&fleetv1.KeyReport{NodeId: "b", Gateway: "sec-a/gw", TakesSends: true}); err != nil {
		t.Fatal(err)
	}
	sends := &fleetv1.PoolSends{Pool: "pool"}
	sends.Add(fleetv1.Sent{Endpoint: 42, Keys: []uint64{7, 8, 9}})
	if err := a.Send(&fleetv1.KeyReport{NodeId: "a", Gateway: "sec-a/gw", TakesSends: true}); err != nil {
		t.Fatal(err)
	}
	// Report until the relay is up and the send reaches b (a report sent
	// before the replicas found each other is not relayed).
	got := make(chan *fleetv1.PoolSends, 1)
	go func() {
		for {
			msg, err := b.Recv()
			if err != nil {
				return
			}
			for _, p := range msg.GetSends() {
				got <- p
				return
			}
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		if err := a.Send(&fleetv1.KeyReport{Sends: []*fleetv1.PoolSends{sends}}); err != nil {
			_, err = a.Recv() // the stream's status
			t.Fatalf("the first proxy's stream: %v", err)
		}
		select {
		case p := <-got:
			if p.GetPool() != "pool" || p.Len() < 1 || p.GetEndpoints()[0] != 42 || p.GetKeys()[0] != 7 {
				t.Fatalf("proxy on the second replica got %v, want the first proxy's send to 42", p)
			}
			done = true
		case <-tick.C:
		case <-sctx.Done():
			t.Fatalf("the proxy on the second replica got no send from the proxy on the first:\n%s\n%s",
				grepLines(r1.proc.Logs(), "fleet"), grepLines(r2.proc.Logs(), "fleet"))
		}
	}

	t.Run("a proxy's token cannot relay", func(t *testing.T) {
		for _, tc := range []struct {
			name, token string
			want        codes.Code
		}{{"proxy token", proxyTok, codes.PermissionDenied}, {"no token", "", codes.Unauthenticated}} {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if tc.token != "" {
				ctx = auth(ctx, tc.token)
			}
			st, err := fleetv1.NewPrefixKeysClient(dialTLS(t, xds1, caFile)).Relay(ctx)
			if err == nil {
				_ = st.Send(&fleetv1.RelayBatch{Replica: "x", Reports: []*fleetv1.KeyReport{{NodeId: "x", Gateway: "sec-b/gw"}}})
				_, err = st.CloseAndRecv()
			}
			cancel()
			if status.Code(err) != tc.want {
				t.Errorf("%s: relay %v, want %s", tc.name, err, tc.want)
			}
		}
	})
}

// createPeerService creates the control plane's Service and its
// EndpointSlices as the EndpointSlice controller would for two pods on
// the gRPC port, one ready and one not (documentation addresses: slices
// may not name loopback ones), and a slice of another Service.
func createPeerService(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	_, err := c.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: fleet.PeerPortName, Port: 18000}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := func(ip, pod string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}}
	}
	for slice, svc := range map[string]string{name + "-a": name, "other-a": "other"} {
		_, err = c.Clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: slice, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{endpoint("192.0.2.10", "cp-a", true), endpoint("192.0.2.11", "cp-b", false)},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr(fleet.PeerPortName), Port: ptr(int32(18000))}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
