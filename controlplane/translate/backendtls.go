package translate

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// caCertKey is the ConfigMap key BackendTLSPolicy CA references are read
// from (the Gateway API convention).
const caCertKey = "ca.crt"

// tlsPolicy is one BackendTLSPolicy, validated once per translation.
type tlsPolicy struct {
	p *gwv1.BackendTLSPolicy
	// tls is what the proxy gets; InvalidReason is set when no CA
	// certificate is usable.
	tls *snapshotv1.BackendTLS
	// accepted and resolved are the policy's conditions on every ancestor
	// (conflicted replaces accepted where it lost a target).
	accepted, resolved metav1.Condition
	conflicted         bool
	// gateways are the Gateways of ours whose routes use a Service port
	// the policy targets, by "<ns>/<name>".
	gateways map[string]*gwv1.Gateway
}

// tlsTarget is a Service, or one named port of it ("<ns>/<svc>" or
// "<ns>/<svc>#<port name>").
type tlsTarget string

// indexBackendTLS validates every BackendTLSPolicy and picks, for each
// target, the one that applies: the oldest (then alphabetically first) of
// the policies naming it; the others are Conflicted. A policy naming a
// Service port wins over one naming the whole Service for that port.
func (t *translator) indexBackendTLS() {
	t.tlsByTarget = map[tlsTarget]*tlsPolicy{}
	t.tlsByService = map[tlsTarget][]*tlsPolicy{}
	ps := slices.Clone(t.in.BackendTLSPolicies)
	sort.Slice(ps, func(i, j int) bool { return olderFirst(&ps[i].ObjectMeta, &ps[j].ObjectMeta) })
	for _, p := range ps {
		tp := t.validateTLSPolicy(p)
		t.tlsPolicies = append(t.tlsPolicies, tp)
		for _, ref := range p.Spec.TargetRefs {
			if ref.Group != "" || ref.Kind != "Service" {
				continue
			}
			target := tlsTarget(p.Namespace + "/" + string(ref.Name))
			if byService := t.tlsByService[target]; !slices.Contains(byService, tp) {
				t.tlsByService[target] = append(byService, tp)
			}
			if ref.SectionName != nil && *ref.SectionName != "" {
				target += tlsTarget("#" + string(*ref.SectionName))
			}
			if _, taken := t.tlsByTarget[target]; taken {
				tp.conflicted = true
				continue
			}
			t.tlsByTarget[target] = tp
		}
	}
}

// validateTLSPolicy resolves a policy's CA certificates. Unusable
// references leave ResolvedRefs False (InvalidKind for something other
// than a core ConfigMap, InvalidCACertificateRef for a missing one or one
// without a PEM certificate under ca.crt); with none usable the policy is
// not Accepted (NoValidCACertificate) and its backends fail rather than
// go out unverified.
func (t *translator) validateTLSPolicy(p *gwv1.BackendTLSPolicy) *tlsPolicy {
	gen := p.Generation
	v := &p.Spec.Validation
	out := &tlsPolicy{p: p, gateways: map[string]*gwv1.Gateway{},
		tls:      &snapshotv1.BackendTLS{Hostname: string(v.Hostname)},
		accepted: cond(string(gwv1.PolicyConditionAccepted), true, string(gwv1.PolicyReasonAccepted), "", gen),
		resolved: cond(string(gwv1.BackendTLSPolicyConditionResolvedRefs), true, string(gwv1.BackendTLSPolicyReasonResolvedRefs), "", gen),
	}
	for _, san := range v.SubjectAltNames {
		switch san.Type {
		case gwv1.HostnameSubjectAltNameType:
			out.tls.SubjectAltNames = append(out.tls.SubjectAltNames, &snapshotv1.SubjectAltName{Hostname: string(san.Hostname)})
		case gwv1.URISubjectAltNameType:
			out.tls.SubjectAltNames = append(out.tls.SubjectAltNames, &snapshotv1.SubjectAltName{Uri: string(san.URI)})
		}
	}
	invalid := func(reason, msg string) {
		out.accepted = cond(string(gwv1.PolicyConditionAccepted), false, reason, msg, gen)
		out.tls = &snapshotv1.BackendTLS{Hostname: out.tls.Hostname, InvalidReason: msg}
	}
	if v.Hostname == "" {
		invalid(string(gwv1.PolicyReasonInvalid), "validation.hostname is required")
		return out
	}
	if wk := v.WellKnownCACertificates; wk != nil {
		if *wk != gwv1.WellKnownCACertificatesSystem {
			invalid(string(gwv1.PolicyReasonInvalid), fmt.Sprintf("wellKnownCACertificates %q is not supported (only System)", *wk))
			return out
		}
		out.tls.SystemRoots = true
		return out
	}
	var pems bytes.Buffer
	var bad []string
	badReason := ""
	for _, ref := range v.CACertificateRefs {
		if ref.Group != "" || ref.Kind != "ConfigMap" {
			bad = append(bad, fmt.Sprintf("%s %s/%s: only core ConfigMaps hold CA certificates", ref.Kind, ref.Group, ref.Name))
			badReason = string(gwv1.BackendTLSPolicyReasonInvalidKind)
			continue
		}
		cm := t.configMaps[p.Namespace+"/"+string(ref.Name)]
		if err := caPEM(cm, &pems); err != nil {
			bad = append(bad, fmt.Sprintf("ConfigMap %s: %v", ref.Name, err))
			if badReason == "" {
				badReason = string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef)
			}
		}
	}
	if len(bad) > 0 {
		out.resolved = cond(string(gwv1.BackendTLSPolicyConditionResolvedRefs), false, badReason, strings.Join(bad, "; "), gen)
	}
	if pems.Len() == 0 {
		msg := "no valid CA certificate"
		if len(bad) > 0 {
			msg += ": " + strings.Join(bad, "; ")
		}
		invalid(string(gwv1.BackendTLSPolicyReasonNoValidCACertificate), msg)
		return out
	}
	out.tls.CaPem = pems.Bytes()
	return out
}

// caPEM appends the PEM certificates under cm's ca.crt to w, or says why
// there are none.
func caPEM(cm *corev1.ConfigMap, w *bytes.Buffer) error {
	if cm == nil {
		return fmt.Errorf("not found")
	}
	rest := []byte(cm.Data[caCertKey])
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%s: %v", caCertKey, err)
		}
		_ = pem.Encode(w, b)
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate under %s", caCertKey)
	}
	return nil
}

// backendTLS returns the TLS a Service port's endpoints are spoken to with
// (nil: plain text) and records gs's Gateway as an ancestor of the
// policies targeting the Service (any of its ports, conflicted or not).
func (t *translator) backendTLS(gs *gatewayState, ns, svc string, sp *corev1.ServicePort) *snapshotv1.BackendTLS {
	whole := tlsTarget(ns + "/" + svc)
	t.read(ns)
	for _, tp := range t.tlsByService[whole] {
		t.frag.tlsPolicies[key(&tp.p.ObjectMeta)] = true
	}
	tp := t.tlsByTarget[whole]
	if sp.Name != "" {
		if port := t.tlsByTarget[whole+tlsTarget("#"+sp.Name)]; port != nil {
			tp = port
		}
	}
	switch {
	case tp == nil:
		return nil
	case gs.clientCert == nil || tp.tls.GetInvalidReason() != "":
		return tp.tls
	}
	// The policy's settings are shared by every Gateway; the client
	// certificate is this Gateway's.
	out := proto.CloneOf(tp.tls)
	out.ClientCertificate = gs.clientCert
	return out
}

// tlsPolicyStatuses gives each policy one ancestor per Gateway of ours
// that uses a Service it targets. A policy no such Gateway uses is absent:
// the writer removes our ancestors from it.
func (t *translator) tlsPolicyStatuses() {
	for _, tp := range t.tlsPolicies {
		if len(tp.gateways) == 0 {
			continue
		}
		accepted := tp.accepted
		if tp.conflicted && accepted.Status == metav1.ConditionTrue {
			accepted = cond(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonConflicted),
				"an older policy targets the same Service (port)", tp.p.Generation)
		}
		var st gwv1.PolicyStatus
		names := make([]string, 0, len(tp.gateways))
		for n := range tp.gateways {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			gw := tp.gateways[n]
			gns := gwv1.Namespace(gw.Namespace)
			st.Ancestors = append(st.Ancestors, gwv1.PolicyAncestorStatus{
				AncestorRef: gwv1.ParentReference{Group: ptr(gwv1.Group(gwv1.GroupName)), Kind: ptr(gwv1.Kind("Gateway")),
					Namespace: &gns, Name: gwv1.ObjectName(gw.Name)},
				ControllerName: gwv1.GatewayController(t.opts.ControllerName),
				Conditions:     []metav1.Condition{accepted, tp.resolved},
			})
		}
		t.out.Status.BackendTLSPolicies[key(&tp.p.ObjectMeta)] = st
	}
}
