package translate

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/proto/endpointpicker"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// EndpointPickerTimeoutAnnotation bounds each wait for a pool's endpoint
// picker (see proto/endpointpicker).
const EndpointPickerTimeoutAnnotation = endpointpicker.TimeoutAnnotation

// appProtocolH2CPicker on a picker Service port means the picker speaks
// plain-text HTTP/2; any other value (http2, grpc, none) means TLS, which is
// what pickers serve by default.
const appProtocolH2CPicker = appProtocolH2C

// pickerRef is an endpoint picker reference of either pool API version,
// with the API defaults applied.
type pickerRef struct {
	group, kind, name string
	// port is the Service port; 0 when the reference has none.
	port        int32
	failureMode string
}

// v1PickerRef normalises an InferencePool v1 endpointPickerRef (nil when
// the pool has none).
func v1PickerRef(ref *infv1.EndpointPickerRef) *pickerRef {
	if ref == nil {
		return nil
	}
	r := &pickerRef{kind: string(ref.Kind), name: string(ref.Name), failureMode: string(ref.FailureMode)}
	if ref.Group != nil {
		r.group = string(*ref.Group)
	}
	if ref.Port != nil {
		r.port = int32(ref.Port.Number)
	}
	return r
}

// legacyPickerRef normalises a v1alpha2 extensionRef; its port defaults to
// 9002 as in the v0.5.1 CRD.
func legacyPickerRef(ext *inferencealpha.Extension) *pickerRef {
	if ext == nil {
		return nil
	}
	r := &pickerRef{group: ptrStr(ext.Group), kind: ptrStr(ext.Kind), name: ext.Name, port: 9002, failureMode: ptrStr(ext.FailureMode)}
	if ext.PortNumber != nil {
		r.port = *ext.PortNumber
	}
	return r
}

// resolvePicker checks a picker reference in namespace ns: a core Service
// (not ExternalName) that exists and has the port, and a known failure
// mode. It returns the Service and port, or why the reference is invalid.
func (t *translator) resolvePicker(ns string, ref *pickerRef) (*corev1.Service, *corev1.ServicePort, string) {
	t.read(ns)
	if (ref.group != "" && ref.group != "core") || (ref.kind != "" && ref.kind != kindService) {
		return nil, nil, fmt.Sprintf("endpoint picker reference %s must be a Service (got kind %q in group %q)", ref.name, ref.kind, ref.group)
	}
	switch ref.failureMode {
	case "", string(infv1.EndpointPickerFailClose), string(infv1.EndpointPickerFailOpen):
	default:
		return nil, nil, fmt.Sprintf("endpoint picker failureMode %q is neither %s nor %s", ref.failureMode, infv1.EndpointPickerFailClose, infv1.EndpointPickerFailOpen)
	}
	svc := t.services[ns+"/"+ref.name]
	if svc == nil {
		return nil, nil, fmt.Sprintf("endpoint picker Service %s/%s not found", ns, ref.name)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil, fmt.Sprintf("endpoint picker Service %s/%s is of type ExternalName, which is not supported", ns, ref.name)
	}
	if ref.port == 0 {
		return nil, nil, fmt.Sprintf("endpoint picker reference to Service %s/%s needs a port", ns, ref.name)
	}
	sp := servicePort(svc, ref.port)
	if sp == nil {
		return nil, nil, fmt.Sprintf("endpoint picker Service %s/%s has no port %d", ns, ref.name, ref.port)
	}
	return svc, sp, ""
}

// endpointPicker is the snapshot form of a pool's picker reference for
// gateway gs (nil without one). The picker Service's ready endpoints go
// into an Endpoints resource of their own, shared by the pools naming the
// same picker, so picker pod churn resends only that resource.
func (t *translator) endpointPicker(gs *gatewayState, ns string, ref *pickerRef, annotations map[string]string) *snapshotv1.EndpointPicker {
	if ref == nil {
		return nil
	}
	ep := &snapshotv1.EndpointPicker{Service: ns + "/" + ref.name}
	if ref.port != 0 {
		ep.Service += fmt.Sprintf(":%d", ref.port)
	}
	if ref.failureMode == string(infv1.EndpointPickerFailOpen) {
		ep.FailureMode = snapshotv1.EndpointPicker_FAIL_OPEN
	}
	if d, err := pickerTimeout(annotations); err == nil && d > 0 {
		ep.Timeout = durationpb.New(d)
	}
	svc, sp, invalid := t.resolvePicker(ns, ref)
	if invalid != "" {
		ep.InvalidReason = invalid
		return ep
	}
	name := fmt.Sprintf("%s/endpointpicker/%s/%s:%d", gs.name, ns, svc.Name, sp.Port)
	ep.Endpoints = name
	if _, ok := gs.endpoints[name]; !ok {
		gs.endpoints[name] = &snapshotv1.Endpoints{Name: name, Endpoints: cleanEndpoints(t.serviceEndpoints(ns, svc, sp))}
		svcName, port := svc.Name, sp.Port
		gs.endpointSources[name] = endpointSource{ns: ns, list: func(t *translator) []*snapshotv1.Endpoint {
			svc := t.services[ns+"/"+svcName]
			return t.serviceEndpoints(ns, svc, servicePort(svc, port))
		}}
	}
	ep.Plaintext = sp.AppProtocol != nil && *sp.AppProtocol == appProtocolH2CPicker
	if !ep.Plaintext {
		ep.Tls = t.backendTLS(gs, ns, svc.Name, sp)
	}
	return ep
}

// pickerTimeout reads the pool's timeout annotation: 0 without it (or
// with a bad one, which its status reports), the proxies' default then
// applies.
func pickerTimeout(annotations map[string]string) (time.Duration, error) {
	return endpointpicker.Timeout(annotations)
}
