package scenarios

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
	debugv1 "github.com/infergate/infergate/proto/debug/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const securityGatewaysYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: sec-a}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: sec-b}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: 8080}]
`

// TestKubeSecurity: the control plane serves xDS only over TLS, only to a
// proxy presenting an audience-bound token of its own Gateway's
// ServiceAccount, and its debug service only to users allowed to list
// Gateways; a proxy's admin port is not reachable off loopback.
func TestKubeSecurity(t *testing.T) {
	ctx := context.Background()
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const leaseNS = "infergate-system"
	for _, ns := range []string{leaseNS, "sec-a", "sec-b", "ops"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	applyYAML(ctx, t, c, securityGatewaysYAML, nil)
	r := startReplica(t, "cp", c, leaseNS)
	caFile := xdsCAFile(ctx, t, c, leaseNS)
	tokenA := readFile(t, proxyToken(ctx, t, c, "sec-a/gw", xdsauth.DefaultAudience))
	tokenAWrongAudience := readFile(t, proxyToken(ctx, t, c, "sec-a/gw", "https://kubernetes.default.svc"))

	t.Run("proxy streams", func(t *testing.T) {
		for _, tc := range []struct {
			name, token, gateway string
			plaintext            bool
			want                 codes.Code
		}{
			{name: "own gateway is served", token: tokenA, gateway: "sec-a/gw", want: codes.OK},
			{name: "another gateway is refused", token: tokenA, gateway: "sec-b/gw", want: codes.PermissionDenied},
			{name: "no token is refused", gateway: "sec-a/gw", want: codes.Unauthenticated},
			{name: "token for another audience is refused", token: tokenAWrongAudience, gateway: "sec-a/gw", want: codes.Unauthenticated},
			{name: "plaintext is refused", gateway: "sec-a/gw", plaintext: true, want: codes.Unavailable},
		} {
			t.Run(tc.name, func(t *testing.T) {
				eventually(t, func() error {
					got := openXDS(ctx, t, r.xds, caFile, tc.token, tc.gateway, tc.plaintext)
					if status.Code(got) != tc.want {
						return fmt.Errorf("stream for %s: %v, want %s", tc.gateway, got, tc.want)
					}
					return nil
				})
			})
		}
	})

	t.Run("debug service needs list on gateways", func(t *testing.T) {
		reader := readFile(t, serviceAccountToken(ctx, t, c, "ops/reader", xdsauth.DefaultAudience))
		grantListGateways(ctx, t, c, "ops", "reader")
		for _, tc := range []struct {
			name, token string
			want        codes.Code
		}{
			{"no token", "", codes.Unauthenticated},
			{"a proxy's token", tokenA, codes.PermissionDenied},
			{"a user allowed to list gateways", reader, codes.OK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				eventually(t, func() error {
					conn := dialTLS(t, r.xds, caFile)
					ctx := ctx
					if tc.token != "" {
						ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
					}
					_, err := debugv1.NewDebugClient(conn).ListGateways(ctx, &debugv1.ListGatewaysRequest{})
					if status.Code(err) != tc.want {
						return fmt.Errorf("ListGateways: %v, want %s", err, tc.want)
					}
					return nil
				})
			})
		}
	})

	t.Run("proxy admin port is loopback only by default", func(t *testing.T) {
		// No --admin-address: the default, 127.0.0.1:19000.
		harness.Start(t, "proxy", bins.Path("proxy"), "--xds-address", r.xds, "--gateway", "sec-a/gw",
			"--listen-address", "127.0.0.1",
			"--xds-ca-file", caFile, "--xds-token-file", proxyToken(ctx, t, c, "sec-a/gw", xdsauth.DefaultAudience))
		harness.WaitHTTP(ctx, t, "http://127.0.0.1:19000/healthz", syncTimeout)
		// Bound to 127.0.0.1 itself, not a wildcard: another address of the
		// same host (127.0.0.2) gets no answer.
		if conn, err := net.DialTimeout("tcp", "127.0.0.2:19000", time.Second); err == nil {
			conn.Close()
			t.Fatal("admin port answers on 127.0.0.2:19000; by default it must bind 127.0.0.1 only")
		}
	})
}

// openXDS opens a delta ADS stream for gateway and returns the error of the
// first receive (nil when the server answers with resources).
func openXDS(ctx context.Context, t testing.TB, addr, caFile, token, gateway string, plaintext bool) error {
	t.Helper()
	var conn *grpc.ClientConn
	if plaintext {
		var err error
		if conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	} else {
		conn = dialTLS(t, addr, caFile)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"gateway": gateway})
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:    &corev3.Node{Id: "security-test", Metadata: md},
		TypeUrl: snapshotv1.TypeManifest,
	}); err != nil {
		_, rerr := stream.Recv()
		return rerr
	}
	_, err = stream.Recv()
	return err
}

func dialTLS(t testing.TB, addr, caFile string) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readFile(t, caFile))) {
		t.Fatal("bad CA file")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func grantListGateways(ctx context.Context, t testing.TB, c *cluster.Cluster, ns, sa string) {
	t.Helper()
	rbac := c.Clientset.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-reader-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "gateway-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
