package translate

import (
	"crypto/tls"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// secretCert resolves a reference to a certificate and key Secret (tls.crt,
// tls.key) made by an object of kind fromKind in fromNS. cert is nil when
// the reference is unusable: notPermitted when a ReferenceGrant is
// missing, and msg says why.
func (t *translator) secretCert(ref gwv1.SecretObjectReference, fromKind, fromNS string) (cert *snapshotv1.Certificate, notPermitted bool, msg string) {
	group, kind := "", "Secret"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := fromNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if (group != "" && group != "core") || kind != "Secret" {
		return nil, false, fmt.Sprintf("certificate reference %s/%s %q is not a Secret", group, kind, ref.Name)
	}
	if ns != fromNS && !t.granted(gatewayGroup, fromKind, fromNS, "", "Secret", ns, string(ref.Name)) {
		return nil, true, fmt.Sprintf("no ReferenceGrant in %s allows Secret %s", ns, ref.Name)
	}
	t.read(ns)
	s := t.secrets[ns+"/"+string(ref.Name)]
	if s == nil {
		return nil, false, fmt.Sprintf("Secret %s/%s not found", ns, ref.Name)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return nil, false, fmt.Sprintf("Secret %s/%s lacks tls.crt or tls.key", ns, ref.Name)
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return nil, false, fmt.Sprintf("Secret %s/%s: %v", ns, ref.Name, err)
	}
	return &snapshotv1.Certificate{Name: ns + "/" + string(ref.Name), CertPem: crt, KeyPem: key}, false, ""
}

// backendClientCert resolves the Gateway's spec.tls.backend
// clientCertificateRef: the certificate its proxies present to TLS
// backends (BackendTLSPolicy) that ask for one, and the Gateway's
// ResolvedRefs condition (InvalidClientCertificateRef, RefNotPermitted).
// With an unusable reference no certificate is presented, so a backend
// requiring one refuses the handshake (502) — nothing else changes.
func (t *translator) backendClientCert(gs *gatewayState) {
	tlsCfg := gs.gw.Spec.TLS
	if tlsCfg == nil || tlsCfg.Backend == nil || tlsCfg.Backend.ClientCertificateRef == nil {
		return
	}
	gen := gs.gw.Generation
	cert, notPermitted, msg := t.secretCert(*tlsCfg.Backend.ClientCertificateRef, kindGateway, gs.gw.Namespace)
	var c metav1.Condition
	switch {
	case notPermitted:
		c = cond(string(gwv1.GatewayConditionResolvedRefs), false, string(gwv1.GatewayReasonRefNotPermitted), "spec.tls.backend.clientCertificateRef: "+msg, gen)
	case cert == nil:
		c = cond(string(gwv1.GatewayConditionResolvedRefs), false, string(gwv1.GatewayReasonInvalidClientCertificateRef), "spec.tls.backend.clientCertificateRef: "+msg, gen)
	default:
		c = cond(string(gwv1.GatewayConditionResolvedRefs), true, string(gwv1.GatewayReasonResolvedRefs), "", gen)
	}
	gs.clientCert, gs.resolvedRefs = cert, &c
}
