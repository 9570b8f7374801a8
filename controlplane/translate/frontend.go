package translate

import (
	"bytes"
	"fmt"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// frontendValidation is the client-certificate validation of the Gateway's
// spec.tls.frontend that applies to port: its perPort entry, else the
// default; nil when none.
func frontendValidation(gw *gwv1.Gateway, port gwv1.PortNumber) *gwv1.FrontendTLSValidation {
	if gw.Spec.TLS == nil || gw.Spec.TLS.Frontend == nil {
		return nil
	}
	f := gw.Spec.TLS.Frontend
	for _, pp := range f.PerPort {
		if pp.Port == port {
			return pp.TLS.Validation
		}
	}
	return f.Default.Validation
}

// insecureFrontendValidation reports whether the Gateway's default or any
// per-port client validation is AllowInsecureFallback (the Gateway then
// carries the InsecureFrontendValidationMode condition, as the API asks).
func insecureFrontendValidation(gw *gwv1.Gateway) bool {
	if gw.Spec.TLS == nil || gw.Spec.TLS.Frontend == nil {
		return false
	}
	f := gw.Spec.TLS.Frontend
	if v := f.Default.Validation; v != nil && v.Mode == gwv1.AllowInsecureFallback {
		return true
	}
	for _, pp := range f.PerPort {
		if v := pp.TLS.Validation; v != nil && v.Mode == gwv1.AllowInsecureFallback {
			return true
		}
	}
	return false
}

// listenerClientValidation resolves the CA certificates an HTTPS listener
// checks client certificates against. A reference that is not a core
// ConfigMap (InvalidCACertificateKind), one to another namespace without a
// ReferenceGrant (RefNotPermitted), or a ConfigMap missing or without a PEM
// certificate under ca.crt (InvalidCACertificateRef) sets ResolvedRefs
// False; with none usable the listener is not Accepted
// (NoValidCACertificate) and not served: it must never accept clients it
// was told to check without checking them.
func (t *translator) listenerClientValidation(gs *gatewayState, l *listenerState) {
	v := frontendValidation(gs.gw, l.spec.Port)
	if v == nil {
		return
	}
	gen := l.gen
	var pems bytes.Buffer
	var bad []string
	for _, ref := range v.CACertificateRefs {
		ns := gs.gw.Namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = string(*ref.Namespace)
		}
		reason := ""
		switch {
		case (ref.Group != "" && ref.Group != "core") || ref.Kind != "ConfigMap":
			reason, bad = string(gwv1.ListenerReasonInvalidCACertificateKind),
				append(bad, fmt.Sprintf("caCertificateRef %s %s/%s: only core ConfigMaps hold CA certificates", ref.Kind, ref.Group, ref.Name))
		case ns != gs.gw.Namespace && !t.granted(gatewayGroup, kindGateway, gs.gw.Namespace, "", "ConfigMap", ns, string(ref.Name)):
			reason, bad = string(gwv1.ListenerReasonRefNotPermitted),
				append(bad, fmt.Sprintf("no ReferenceGrant in %s allows ConfigMap %s", ns, ref.Name))
		default:
			t.read(ns)
			if err := caPEM(t.configMaps[ns+"/"+string(ref.Name)], &pems); err != nil {
				reason, bad = string(gwv1.ListenerReasonInvalidCACertificateRef), append(bad, fmt.Sprintf("ConfigMap %s/%s: %v", ns, ref.Name, err))
			}
		}
		if reason != "" && l.resolved.Reason == string(gwv1.ListenerReasonResolvedRefs) {
			l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), false, reason, "", gen)
		}
	}
	if len(bad) > 0 && l.resolved.Message == "" {
		l.resolved.Message = strings.Join(bad, "; ")
	}
	if pems.Len() == 0 {
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonNoValidCACertificate),
			"no valid CA certificate for client validation: "+strings.Join(bad, "; "), gen)
		return
	}
	l.clientValidation = &snapshotv1.ClientValidation{CaPem: pems.Bytes(),
		AllowInsecureFallback: v.Mode == gwv1.AllowInsecureFallback}
}
