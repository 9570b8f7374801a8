package xdsauth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Validity of a generated bundle, and how early before expiry a control
// plane replaces it at start-up.
const (
	DefaultValidity    = 365 * 24 * time.Hour
	DefaultRenewBefore = 30 * 24 * time.Hour
)

// EnsureSecret returns the bundle kept in Secret ns/name, creating it (or
// replacing one that cannot serve hosts, or is about to expire) first.
// Replicas starting together race on Create; the loser reads the winner's
// Secret, so all serve the same CA.
func EnsureSecret(ctx context.Context, client kubernetes.Interface, ns, name string, hosts []string, log *slog.Logger) (*Bundle, error) {
	secrets := client.CoreV1().Secrets(ns)
	for attempt := 0; attempt < 3; attempt++ {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			b := fromSecret(s)
			problem := b.Check(hosts, time.Now(), DefaultRenewBefore)
			if problem == nil {
				return b, nil
			}
			log.Warn("xDS TLS secret cannot be used; issuing a new CA and certificate", "secret", ns+"/"+name, "reason", problem)
			nb, err := NewBundle(hosts, DefaultValidity, time.Now())
			if err != nil {
				return nil, err
			}
			toSecret(nb, s)
			if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				if apierrors.IsConflict(err) {
					continue
				}
				return nil, fmt.Errorf("update secret %s/%s: %w", ns, name, err)
			}
			return nb, nil
		case apierrors.IsNotFound(err):
			nb, err := NewBundle(hosts, DefaultValidity, time.Now())
			if err != nil {
				return nil, err
			}
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "infergate"}}}
			toSecret(nb, s)
			if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
				if apierrors.IsAlreadyExists(err) {
					continue
				}
				return nil, fmt.Errorf("create secret %s/%s: %w", ns, name, err)
			}
			log.Info("created xDS CA and serving certificate", "secret", ns+"/"+name, "hosts", hosts, "notAfter", nb.NotAfter)
			return nb, nil
		default:
			return nil, fmt.Errorf("get secret %s/%s: %w", ns, name, err)
		}
	}
	return nil, fmt.Errorf("secret %s/%s: kept changing under us", ns, name)
}

func fromSecret(s *corev1.Secret) *Bundle {
	return &Bundle{CACert: s.Data[KeyCACert], CAKey: s.Data[KeyCAKey], CertPEM: s.Data[KeyCert], KeyPEM: s.Data[KeyKey]}
}

func toSecret(b *Bundle, s *corev1.Secret) {
	s.Type = corev1.SecretTypeOpaque
	s.Data = map[string][]byte{KeyCACert: b.CACert, KeyCAKey: b.CAKey, KeyCert: b.CertPEM, KeyKey: b.KeyPEM}
}
