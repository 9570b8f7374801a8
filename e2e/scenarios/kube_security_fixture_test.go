package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/e2e/cluster"
)

// tlsSecret is the Secret the control plane keeps its xDS CA in (its
// --xds-tls-secret default), in the leader-election namespace.
const tlsSecret = "infergate-xds-tls"

// xdsCAFile waits for the control plane to have created its CA Secret and
// writes the CA to a file, as the chart mounts it for proxies.
func xdsCAFile(ctx context.Context, t testing.TB, c *cluster.Cluster, leaseNS string) string {
	t.Helper()
	var ca []byte
	eventually(t, func() error {
		s, err := c.Clientset.CoreV1().Secrets(leaseNS).Get(ctx, tlsSecret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ca = s.Data[xdsauth.KeyCACert]; len(ca) == 0 {
			return fmt.Errorf("secret %s/%s has no %s", leaseNS, tlsSecret, xdsauth.KeyCACert)
		}
		return nil
	})
	f := filepath.Join(t.TempDir(), "xds-ca.crt")
	if err := os.WriteFile(f, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// proxyToken creates the ServiceAccount the provisioner would create for
// gateway ("ns/name", class infergate) and returns a token file for it bound
// to audience, like the projected token a provisioned proxy mounts.
func proxyToken(ctx context.Context, t testing.TB, c *cluster.Cluster, gateway, audience string) string {
	t.Helper()
	ns, name, _ := strings.Cut(gateway, "/")
	sa := provision.ServiceAccountFor(ns, name, "infergate")
	return serviceAccountToken(ctx, t, c, sa, audience)
}

// serviceAccountToken creates ServiceAccount sa ("ns/name") if needed and
// writes a token for it, bound to audience, to a file.
func serviceAccountToken(ctx context.Context, t testing.TB, c *cluster.Cluster, sa, audience string) string {
	t.Helper()
	ns, name, _ := strings.Cut(sa, "/")
	_, err := c.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ServiceAccount %s: %v", sa, err)
	}
	expiry := int64(3600)
	tr, err := c.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	f := filepath.Join(t.TempDir(), strings.ReplaceAll(sa, "/", "_")+".token")
	if err := os.WriteFile(f, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
