package translate

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/proto/kvevents"
	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const (
	// EngineTypeLabel on a pod names its model server; DefaultEngineType
	// applies when the label is absent.
	EngineTypeLabel   = "inference.networking.k8s.io/engine-type"
	DefaultEngineType = "vllm"

	appProtocolH2C = "kubernetes.io/h2c"
	kindService    = "Service"
	kindPool       = "InferencePool"
)

// Kinds of resolved references.
const (
	refService = iota + 1
	refPool
	refLegacyPool
)

// resolvedRef is a backendRef after group/kind, ReferenceGrant and existence
// checks. reason is a Gateway API route reason when the ref is invalid.
type resolvedRef struct {
	kind     int
	ns, name string
	port     int32 // Service port
	reason   string
	message  string
}

// poolID identifies an inference pool across API versions ("" for Services).
func (r resolvedRef) poolID() string {
	switch r.kind {
	case refPool:
		return "v1/" + r.ns + "/" + r.name
	case refLegacyPool:
		return "v1alpha2/" + r.ns + "/" + r.name
	}
	return ""
}

func (t *translator) resolveRef(routeNS string, ref gwv1.BackendObjectReference) resolvedRef {
	group, kind := "", kindService
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := routeNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	t.read(ns)
	res := resolvedRef{ns: ns, name: string(ref.Name)}
	switch {
	case (group == "" || group == "core") && kind == kindService:
		res.kind = refService
	case group == infv1.GroupName && kind == kindPool:
		res.kind = refPool
	case group == inferencealpha.Group && kind == kindPool:
		res.kind = refLegacyPool
	default:
		res.reason = string(gwv1.RouteReasonInvalidKind)
		res.message = fmt.Sprintf("backendRef %s: unsupported kind %q in group %q", ref.Name, kind, group)
		return res
	}
	if ns != routeNS && !t.granted(gatewayGroup, kindHTTP, routeNS, group, kind, ns, res.name) {
		res.reason = string(gwv1.RouteReasonRefNotPermitted)
		res.message = fmt.Sprintf("backendRef %s/%s %s: no ReferenceGrant in %s allows it", ns, res.name, kind, ns)
		return res
	}
	notFound := func(format string, args ...any) resolvedRef {
		res.reason = string(gwv1.RouteReasonBackendNotFound)
		res.message = fmt.Sprintf(format, args...)
		return res
	}
	switch res.kind {
	case refService:
		svc := t.services[ns+"/"+res.name]
		if svc == nil {
			return notFound("Service %s/%s not found", ns, res.name)
		}
		if ref.Port == nil {
			res.reason = string(gwv1.RouteReasonUnsupportedValue)
			res.message = fmt.Sprintf("backendRef to Service %s/%s needs a port", ns, res.name)
			return res
		}
		res.port = *ref.Port
		if servicePort(svc, res.port) == nil {
			return notFound("Service %s/%s has no port %d", ns, res.name, res.port)
		}
	case refPool:
		if t.pools[ns+"/"+res.name] == nil {
			return notFound("InferencePool %s/%s not found", ns, res.name)
		}
	case refLegacyPool:
		if t.legacy[ns+"/"+res.name] == nil {
			return notFound("InferencePool (%s) %s/%s not found", inferencealpha.APIVersion, ns, res.name)
		}
	}
	return res
}

// granted reports whether a ReferenceGrant in toNS lets objects of
// fromGroup/fromKind in fromNS refer to toGroup/toKind named toName.
func (t *translator) granted(fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	if toGroup == "core" {
		toGroup = ""
	}
	t.read(toNS)
	for _, g := range t.grants[toNS] {
		from := false
		for _, f := range g.Spec.From {
			if string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, to := range g.Spec.To {
			tg := string(to.Group)
			if tg == "core" {
				tg = ""
			}
			if tg == toGroup && string(to.Kind) == toKind && (to.Name == nil || *to.Name == "" || string(*to.Name) == toName) {
				return true
			}
		}
	}
	return false
}

func servicePort(svc *corev1.Service, port int32) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

// backendRef resolves a reference for one gateway, creating its Backend and
// Endpoints resources on first use. Invalid refs become an empty backend
// with the reason, which the proxy answers with 500.
func (t *translator) backendRef(gs *gatewayState, routeNS string, ref gwv1.BackendObjectReference) *snapshotv1.BackendRef {
	res := t.resolveRef(routeNS, ref)
	if res.reason != "" {
		return &snapshotv1.BackendRef{InvalidReason: res.reason + ": " + res.message}
	}
	var name string
	switch res.kind {
	case refService:
		name = fmt.Sprintf("%s/service/%s/%s:%d", gs.name, res.ns, res.name, res.port)
	case refPool:
		name = PoolBackendName(gs.name, res.ns, res.name, false)
	case refLegacyPool:
		name = PoolBackendName(gs.name, res.ns, res.name, true)
	}
	if _, ok := gs.backends[name]; !ok {
		var b *snapshotv1.Backend
		var eps []*snapshotv1.Endpoint
		switch res.kind {
		case refService:
			b, eps = t.serviceBackend(gs, res)
		case refPool:
			b, eps = t.poolBackend(gs, t.pools[res.ns+"/"+res.name])
		case refLegacyPool:
			b, eps = t.legacyPoolBackend(gs, t.legacy[res.ns+"/"+res.name])
		}
		b.Name, b.Endpoints = name, name
		gs.backends[name] = b
		gs.endpoints[name] = &snapshotv1.Endpoints{Name: name, Endpoints: cleanEndpoints(eps)}
		gs.endpointSources[name] = endpointSource{ns: res.ns, list: func(t *translator) []*snapshotv1.Endpoint {
			switch res.kind {
			case refService:
				svc := t.services[res.ns+"/"+res.name]
				return t.serviceEndpoints(res.ns, svc, servicePort(svc, res.port))
			case refPool:
				return t.v1PoolEndpoints(t.pools[res.ns+"/"+res.name])
			default:
				return t.legacyPoolEndpoints(t.legacy[res.ns+"/"+res.name])
			}
		}}
		if id := res.poolID(); id != "" {
			gs.pools[id] = name
		}
	}
	return &snapshotv1.BackendRef{Backend: name}
}

// PoolBackendName is the Backend resource name of the InferencePool
// ns/name (legacy: of the v1alpha2 kind) in the snapshot of the Gateway gw
// ("<ns>/<name>"); proxies name the pool by it, e.g. in the problems they
// report.
func PoolBackendName(gw, ns, name string, legacy bool) string {
	if legacy {
		// A legacy pool may share namespace/name with a v1 pool.
		return gw + "/inferencepool.v1alpha2/" + ns + "/" + name
	}
	return gw + "/inferencepool/" + ns + "/" + name
}

// cleanEndpoints sorts endpoints and drops what a proxy would reject as a
// whole snapshot: unparsable addresses, ports out of range, duplicates (pods
// sharing a host-network IP, a port listed twice).
func cleanEndpoints(eps []*snapshotv1.Endpoint) []*snapshotv1.Endpoint {
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Address != eps[j].Address {
			return eps[i].Address < eps[j].Address
		}
		if eps[i].Port != eps[j].Port {
			return eps[i].Port < eps[j].Port
		}
		return eps[i].Pod < eps[j].Pod
	})
	out := eps[:0]
	seen := map[netip.AddrPort]bool{}
	for _, e := range eps {
		addr, err := netip.ParseAddr(e.Address)
		if err != nil || e.Port == 0 || e.Port > 65535 {
			continue
		}
		ap := netip.AddrPortFrom(addr.Unmap(), uint16(e.Port))
		if seen[ap] {
			continue
		}
		seen[ap] = true
		out = append(out, e)
	}
	return out
}

// PickerProfileAnnotation on an InferencePool sets its scheduling profile
// (YAML or JSON of the snapshot's PickerProfile: scorers with names, weights
// and parameters, shedSheddable, and the optional wait queue). Without it a
// pool gets DefaultPickerProfile. The profile is checked completely against
// the contract the proxies build from (proto/pickerprofile), so a bad one
// is reported on the pool's status and the proxies get the default: they
// never receive a profile they would refuse.
const PickerProfileAnnotation = "infergate.dev/picker-profile"

// PickerProfileFor returns the profile the annotations ask for, or the
// default with an error saying why the annotation could not be used.
func PickerProfileFor(annotations map[string]string) (*snapshotv1.PickerProfile, error) {
	raw, ok := annotations[PickerProfileAnnotation]
	if !ok {
		return DefaultPickerProfile(), nil
	}
	js, err := yaml.YAMLToJSON([]byte(raw))
	if err != nil {
		return DefaultPickerProfile(), fmt.Errorf("annotation %s: %w", PickerProfileAnnotation, err)
	}
	p := &snapshotv1.PickerProfile{}
	if err := protojson.Unmarshal(js, p); err != nil {
		// protobuf-go varies the spaces in its error text per binary on
		// purpose; status messages must be stable, so normalise them.
		msg := strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "proto:")), " ")
		return DefaultPickerProfile(), fmt.Errorf("annotation %s: %s", PickerProfileAnnotation, msg)
	}
	if err := pickerprofile.Validate(p); err != nil {
		return DefaultPickerProfile(), fmt.Errorf("annotation %s: %w", PickerProfileAnnotation, err)
	}
	// KV events the proxies could not use leave the rest of the profile
	// in force: the pool keeps approximate prefix matching.
	if err := kvevents.CheckConfig(p.KvEvents); err != nil {
		p.KvEvents = nil
		return p, &ApproximateMatching{Reason: err.Error()}
	}
	return p, nil
}

// ApproximateMatching is PickerProfileFor's answer for a profile whose
// kvEvents cannot be used: the profile applies without them, and prefix
// matching stays approximate.
type ApproximateMatching struct{ Reason string }

func (a *ApproximateMatching) Error() string {
	return fmt.Sprintf("annotation %s: %s; prefix matching stays approximate", PickerProfileAnnotation, a.Reason)
}

// KVEventsPortAnnotation and KVReplayPortAnnotation on a model-server pod
// name its KV-event ports, overriding the pool profile's kvEvents ports.
const (
	KVEventsPortAnnotation = "infergate.dev/kv-events-port"
	KVReplayPortAnnotation = "infergate.dev/kv-events-replay-port"
)

// portAnnotation reads a port annotation (0: absent or not a port).
func portAnnotation(annotations map[string]string, key string) uint32 {
	v, err := strconv.ParseUint(annotations[key], 10, 16)
	if err != nil || v == 0 {
		return 0
	}
	return uint32(v)
}

type profileResult struct {
	p   *snapshotv1.PickerProfile
	err error
}

// pickerProfile is PickerProfileFor, once per distinct annotation value in
// a translation. The profile may be shared by several Backends: snapshot
// resources are never modified once built.
func (t *translator) pickerProfile(annotations map[string]string) (*snapshotv1.PickerProfile, error) {
	raw, ok := annotations[PickerProfileAnnotation]
	if !ok {
		return DefaultPickerProfile(), nil
	}
	r, ok := t.profiles[raw]
	if !ok {
		r.p, r.err = PickerProfileFor(annotations)
		t.profiles[raw] = r
	}
	return r.p, r.err
}

// DefaultPickerProfile is the scheduling profile of a pool without the
// annotation: the contract's default (pickerprofile.Default), which names
// every plugin it runs so snapshots show it.
func DefaultPickerProfile() *snapshotv1.PickerProfile { return pickerprofile.Default() }

// serviceBackend is a Service port with its endpoints (serviceEndpoints)
// and the TLS of the BackendTLSPolicy for its port.
func (t *translator) serviceBackend(gs *gatewayState, res resolvedRef) (*snapshotv1.Backend, []*snapshotv1.Endpoint) {
	svc := t.services[res.ns+"/"+res.name]
	sp := servicePort(svc, res.port)
	b := &snapshotv1.Backend{Kind: snapshotv1.Backend_SERVICE, Source: res.ns + "/" + res.name, AppProtocol: snapshotv1.Backend_HTTP1,
		Tls: t.backendTLS(gs, res.ns, res.name, sp)}
	if sp.AppProtocol != nil && *sp.AppProtocol == appProtocolH2C {
		b.AppProtocol = snapshotv1.Backend_H2C
	}
	return b, t.serviceEndpoints(res.ns, svc, sp)
}

// serviceEndpoints are the ready endpoints of a Service port: from its
// EndpointSlices of IP addresses, or, when it has none (the file source
// often lists only Pods), from the Pods its selector matches. Slices of
// FQDN addresses name hosts a proxy cannot dial without DNS; a Service
// with only those is resolved from its selector too.
func (t *translator) serviceEndpoints(ns string, svc *corev1.Service, sp *corev1.ServicePort) []*snapshotv1.Endpoint {
	var eps []*snapshotv1.Endpoint
	seen := map[string]bool{}
	add := func(addr string, port int32, pod string) {
		k := addr + ":" + strconv.Itoa(int(port))
		if seen[k] {
			return
		}
		seen[k] = true
		eps = append(eps, &snapshotv1.Endpoint{Address: addr, Port: uint32(port), Pod: pod, Weight: 1})
	}
	ipSlices := false
	for _, s := range t.slices[ns+"/"+svc.Name] {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ipSlices = true
		port := int32(0)
		for _, p := range s.Ports {
			if p.Port != nil && ptrStr(p.Name) == sp.Name {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			pod := ""
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				pod = ns + "/" + ep.TargetRef.Name
			}
			for _, a := range ep.Addresses {
				add(a, port, pod)
			}
		}
	}
	if ipSlices || len(svc.Spec.Selector) == 0 {
		return eps
	}
	for _, p := range t.podsIn(ns) {
		if !PodServing(p) || !matchesLabels(svc.Spec.Selector, p.Labels) {
			continue
		}
		if port := targetPort(p, sp); port > 0 {
			add(p.Status.PodIP, port, ns+"/"+p.Name)
		}
	}
	return eps
}

// targetPort resolves a Service port's targetPort on a pod (0 if the named
// port does not exist there).
func targetPort(p *corev1.Pod, sp *corev1.ServicePort) int32 {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return cp.ContainerPort
				}
			}
		}
		return 0
	case sp.TargetPort.IntVal > 0:
		return sp.TargetPort.IntVal
	}
	return sp.Port
}

func ptrStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// PodServing reports whether a pod takes traffic: Ready, has an IP, not
// terminating. Terminating pods leave a pool at once rather than when their
// readiness flips.
func PodServing(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// matchesLabels: every selector label present with the same value. An empty
// selector selects nothing (never "every pod in the namespace").
func matchesLabels[K, V ~string](sel map[K]V, lbls map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if got, ok := lbls[string(k)]; !ok || got != string(v) {
			return false
		}
	}
	return true
}

func (t *translator) poolEndpoints(ns string, sel func(map[string]string) bool, ports []int32) []*snapshotv1.Endpoint {
	t.read(ns)
	var eps []*snapshotv1.Endpoint
	for _, p := range t.podsIn(ns) {
		if !PodServing(p) || !sel(p.Labels) {
			continue
		}
		for _, port := range ports {
			eps = append(eps, &snapshotv1.Endpoint{
				Address:      p.Status.PodIP,
				Port:         uint32(port),
				Pod:          ns + "/" + p.Name,
				EngineType:   p.Labels[EngineTypeLabel],
				KvEventsPort: portAnnotation(p.Annotations, KVEventsPortAnnotation),
				KvReplayPort: portAnnotation(p.Annotations, KVReplayPortAnnotation),
			})
		}
	}
	return eps
}

func (t *translator) poolBackend(gs *gatewayState, pool *infv1.InferencePool) (*snapshotv1.Backend, []*snapshotv1.Endpoint) {
	profile, _ := t.pickerProfile(pool.Annotations) // the error is reported on the pool's status
	b := &snapshotv1.Backend{
		Kind:              snapshotv1.Backend_INFERENCE_POOL,
		Source:            key(&pool.ObjectMeta),
		AppProtocol:       snapshotv1.Backend_HTTP1,
		Picker:            profile,
		DefaultEngineType: DefaultEngineType,
		EndpointPicker:    t.endpointPicker(gs, pool.Namespace, v1PickerRef(pool.Spec.EndpointPickerRef), pool.Annotations),
	}
	if pool.Spec.AppProtocol == infv1.AppProtocolH2C {
		b.AppProtocol = snapshotv1.Backend_H2C
	}
	return b, t.v1PoolEndpoints(pool)
}

// v1PoolEndpoints are the serving pods the pool selects, at each target port.
func (t *translator) v1PoolEndpoints(pool *infv1.InferencePool) []*snapshotv1.Endpoint {
	ports := make([]int32, 0, len(pool.Spec.TargetPorts))
	for _, p := range pool.Spec.TargetPorts {
		ports = append(ports, int32(p.Number))
	}
	sel := func(l map[string]string) bool { return matchesLabels(pool.Spec.Selector.MatchLabels, l) }
	return t.poolEndpoints(pool.Namespace, sel, ports)
}

func (t *translator) legacyPoolBackend(gs *gatewayState, pool *inferencealpha.InferencePool) (*snapshotv1.Backend, []*snapshotv1.Endpoint) {
	profile, _ := t.pickerProfile(pool.Annotations)
	b := &snapshotv1.Backend{
		Kind:              snapshotv1.Backend_INFERENCE_POOL,
		Source:            key(&pool.ObjectMeta),
		AppProtocol:       snapshotv1.Backend_HTTP1,
		Picker:            profile,
		DefaultEngineType: DefaultEngineType,
		EndpointPicker:    t.endpointPicker(gs, pool.Namespace, legacyPickerRef(pool.Spec.ExtensionRef), pool.Annotations),
	}
	return b, t.legacyPoolEndpoints(pool)
}

// legacyPoolEndpoints are the serving pods the legacy pool selects.
func (t *translator) legacyPoolEndpoints(pool *inferencealpha.InferencePool) []*snapshotv1.Endpoint {
	sel := func(l map[string]string) bool { return matchesLabels(pool.Spec.Selector, l) }
	return t.poolEndpoints(pool.Namespace, sel, []int32{pool.Spec.TargetPortNumber})
}
