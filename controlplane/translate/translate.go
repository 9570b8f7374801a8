// Package translate turns Kubernetes objects (Gateway API, Inference Extension,
// core) into per-gateway snapshot resources and the statuses those objects
// should carry.
//
// Translate is a pure function: no API clients, no clocks, no I/O. Both the
// file source and the Kubernetes source feed it the same Inputs, and its output
// does not depend on the order of the input slices.
package translate

import (
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// DefaultControllerName is the GatewayClass controllerName infergate serves
// unless told otherwise.
const DefaultControllerName = "infergate.dev/gateway-controller"

// Inputs are every object the translator reads. Objects are never modified.
type Inputs struct {
	GatewayClasses  []*gwv1.GatewayClass
	Gateways        []*gwv1.Gateway
	HTTPRoutes      []*gwv1.HTTPRoute
	ReferenceGrants []*gwv1b1.ReferenceGrant
	ListenerSets    []*gwv1.ListenerSet

	InferencePools []*infv1.InferencePool

	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
	Secrets        []*corev1.Secret
	ConfigMaps     []*corev1.ConfigMap
	Namespaces     []*corev1.Namespace

	BackendTLSPolicies []*gwv1.BackendTLSPolicy

	// Alpha group inference.networking.x-k8s.io/v1alpha2.
	InferenceObjectives    []*inferencealpha.InferenceObjective
	InferenceModelRewrites []*inferencealpha.InferenceModelRewrite
	InferenceModels        []*inferencealpha.InferenceModel
	LegacyInferencePools   []*inferencealpha.InferencePool

	// GatewayAPIChannel is the release channel of the cluster's Gateway
	// API CRDs (the HTTPRoute CRD's gateway.networking.k8s.io/channel
	// annotation): "experimental" adds ExperimentalFeatures to what
	// GatewayClasses publish. Empty (file mode, or the CRD unreadable)
	// counts as standard.
	GatewayAPIChannel string
}

// Options configure a translation.
type Options struct {
	// ControllerName selects the GatewayClasses to serve; empty means
	// DefaultControllerName.
	ControllerName string
}

// Output is the result of one translation.
type Output struct {
	// Gateways holds the snapshot resources of every Gateway we serve, keyed
	// "<namespace>/<name>". A Gateway with no valid listener is still present
	// (with empty resources) so its proxies drop what they had. A Gateway
	// an incremental translation did not translate again keeps the same
	// *GatewayResources as the previous Output.
	Gateways map[string]*GatewayResources
	Status   Status

	// What TranslateIncremental reuses: each gateway's part of the output
	// and what it read, and what applied to all of them.
	frags   map[string]*gatewayFragment
	opts    Options
	channel string
	routes  *routeIndex
}

// GatewayResources are one gateway's snapshot resources, each slice sorted by
// name. snapshot.Build turns them into a versioned snapshot.Set.
type GatewayResources struct {
	// Gateway is "<namespace>/<name>".
	Gateway    string
	Listeners  []*snapshotv1.Listener
	Routes     []*snapshotv1.Route
	Backends   []*snapshotv1.Backend
	Endpoints  []*snapshotv1.Endpoints
	ModelRules []*snapshotv1.ModelRule
}

// All returns every resource, listeners first.
func (g *GatewayResources) All() []snapshotv1.Named {
	out := make([]snapshotv1.Named, 0, len(g.Listeners)+len(g.Routes)+len(g.Backends)+len(g.Endpoints)+len(g.ModelRules))
	for _, r := range g.Listeners {
		out = append(out, r)
	}
	for _, r := range g.Routes {
		out = append(out, r)
	}
	for _, r := range g.Backends {
		out = append(out, r)
	}
	for _, r := range g.Endpoints {
		out = append(out, r)
	}
	for _, r := range g.ModelRules {
		out = append(out, r)
	}
	return out
}

// Status holds the statuses the translation computed, as the real API types,
// keyed "<namespace>/<name>" (GatewayClasses by name). Only objects this
// controller is responsible for appear. Conditions carry ObservedGeneration;
// LastTransitionTime is left zero for the status writer to fill in.
type Status struct {
	GatewayClasses map[string]gwv1.GatewayClassStatus `json:"gatewayClasses,omitempty"`
	Gateways       map[string]gwv1.GatewayStatus      `json:"gateways,omitempty"`
	// HTTPRoutes lists, per route, only the parents that are our Gateways
	// (ControllerName = ours); the writer keeps other controllers' entries.
	HTTPRoutes map[string]gwv1.HTTPRouteStatus `json:"httpRoutes,omitempty"`
	// InferencePools lists, per pool, one parent per Gateway of ours whose
	// routes reference the pool. A pool no longer referenced by a Gateway of
	// ours is absent: the writer removes our parent entries from it.
	InferencePools         map[string]infv1.InferencePoolStatus          `json:"inferencePools,omitempty"`
	LegacyInferencePools   map[string]inferencealpha.InferencePoolStatus `json:"legacyInferencePools,omitempty"`
	InferenceModels        map[string]inferencealpha.ModelStatus         `json:"inferenceModels,omitempty"`
	InferenceObjectives    map[string]inferencealpha.ModelStatus         `json:"inferenceObjectives,omitempty"`
	InferenceModelRewrites map[string]inferencealpha.ModelStatus         `json:"inferenceModelRewrites,omitempty"`
	// ListenerSets holds the status of every ListenerSet whose parentRef
	// names a Gateway of ours, and an empty one for those whose parent
	// Gateway does not exist (clearing what a gone Gateway left).
	ListenerSets map[string]gwv1.ListenerSetStatus `json:"listenerSets,omitempty"`
	// BackendTLSPolicies lists, per policy, one ancestor per Gateway of ours
	// using a Service it targets; a policy none uses is absent and loses
	// our ancestor entries.
	BackendTLSPolicies map[string]gwv1.PolicyStatus `json:"backendTLSPolicies,omitempty"`
}

// Translate computes every served gateway's resources and all statuses.
func Translate(in *Inputs, opts Options) *Output {
	return TranslateIncremental(nil, in, opts, nil)
}

// translator holds the indexes of one translation.
type translator struct {
	opts Options
	in   *Inputs
	out  *Output

	classes  map[string]*gwv1.GatewayClass // ours only, by name
	gateways []*gwv1.Gateway               // ours only, sorted
	routes   []*gwv1.HTTPRoute             // sorted
	// listenerSets in precedence order: oldest first, then by key.
	listenerSets []*gwv1.ListenerSet

	services   map[string]*corev1.Service
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
	namespaces map[string]*corev1.Namespace
	pools      map[string]*infv1.InferencePool
	legacy     map[string]*inferencealpha.InferencePool
	// podsByNS is sorted by name a namespace at a time, on first use
	// (podsIn): an incremental translation reads the pods of a few.
	podsByNS   map[string][]*corev1.Pod
	podsSorted map[string]bool
	slices     map[string][]*discoveryv1.EndpointSlice // by "<ns>/<service>"
	grants     map[string][]*gwv1b1.ReferenceGrant     // by namespace

	// routesByParent lists, per Gateway ("g\x00<ns>/<name>") and
	// ListenerSet ("l\x00<ns>/<name>") a parentRef may name, the indexes
	// in routes of the routes naming it: a gateway considers only those.
	routesByParent map[string][]int
	// routeIndex holds routes and routesByParent (see indexRoutes).
	routeIndex *routeIndex
	// profiles memoises PickerProfileFor per annotation value: every pool
	// of a fleet usually carries the same profile.
	profiles map[string]profileResult

	// frag is the part of the output of the gateway being translated, and
	// reading the namespaces it read (nil between gateways; a route's
	// reference resolution records into its routeRefs instead).
	frag    *gatewayFragment
	reading map[string]bool

	// models holds the accepted model-rule sources, computed once.
	models *modelIndex
	// refs caches resolved backendRefs per route (they do not depend on the
	// gateway).
	refs map[*gwv1.HTTPRoute]*routeRefs
	// tlsPolicies are the BackendTLSPolicies, oldest first; tlsByTarget the
	// one applying to each Service (port) they target; tlsByService all
	// that target a Service or one of its ports, by "<ns>/<svc>".
	tlsPolicies  []*tlsPolicy
	tlsByTarget  map[tlsTarget]*tlsPolicy
	tlsByService map[tlsTarget][]*tlsPolicy
}

// newTranslator indexes in. prevRoutes, the route index of the previous
// translation (may be nil), is reused when in holds the same routes.
func newTranslator(in *Inputs, opts Options, prevRoutes *routeIndex) *translator {
	t := &translator{
		opts:       opts,
		in:         in,
		classes:    map[string]*gwv1.GatewayClass{},
		services:   map[string]*corev1.Service{},
		secrets:    map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{},
		namespaces: map[string]*corev1.Namespace{},
		pools:      map[string]*infv1.InferencePool{},
		legacy:     map[string]*inferencealpha.InferencePool{},
		podsByNS:   map[string][]*corev1.Pod{},
		podsSorted: map[string]bool{},
		slices:     map[string][]*discoveryv1.EndpointSlice{},
		grants:     map[string][]*gwv1b1.ReferenceGrant{},
		refs:       map[*gwv1.HTTPRoute]*routeRefs{},
		out: &Output{
			Gateways: map[string]*GatewayResources{},
			Status: Status{
				GatewayClasses:         map[string]gwv1.GatewayClassStatus{},
				Gateways:               map[string]gwv1.GatewayStatus{},
				HTTPRoutes:             map[string]gwv1.HTTPRouteStatus{},
				ListenerSets:           map[string]gwv1.ListenerSetStatus{},
				InferencePools:         map[string]infv1.InferencePoolStatus{},
				LegacyInferencePools:   map[string]inferencealpha.InferencePoolStatus{},
				InferenceModels:        map[string]inferencealpha.ModelStatus{},
				InferenceObjectives:    map[string]inferencealpha.ModelStatus{},
				InferenceModelRewrites: map[string]inferencealpha.ModelStatus{},
				BackendTLSPolicies:     map[string]gwv1.PolicyStatus{},
			},
		},
	}
	for _, s := range in.Services {
		t.services[key(&s.ObjectMeta)] = s
	}
	for _, s := range in.Secrets {
		t.secrets[key(&s.ObjectMeta)] = s
	}
	for _, c := range in.ConfigMaps {
		t.configMaps[key(&c.ObjectMeta)] = c
	}
	for _, n := range in.Namespaces {
		t.namespaces[n.Name] = n
	}
	for _, p := range in.InferencePools {
		t.pools[key(&p.ObjectMeta)] = p
	}
	for _, p := range in.LegacyInferencePools {
		t.legacy[key(&p.ObjectMeta)] = p
	}
	for _, p := range in.Pods {
		t.podsByNS[p.Namespace] = append(t.podsByNS[p.Namespace], p)
	}
	for _, s := range in.EndpointSlices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := s.Namespace + "/" + svc
		t.slices[k] = append(t.slices[k], s)
	}
	for _, ss := range t.slices {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
	}
	for _, g := range in.ReferenceGrants {
		t.grants[g.Namespace] = append(t.grants[g.Namespace], g)
	}
	t.listenerSets = append([]*gwv1.ListenerSet(nil), in.ListenerSets...)
	sort.Slice(t.listenerSets, func(i, j int) bool { return olderFirst(&t.listenerSets[i].ObjectMeta, &t.listenerSets[j].ObjectMeta) })
	t.routeIndex = indexRoutes(in.HTTPRoutes, prevRoutes)
	t.routes, t.routesByParent = t.routeIndex.routes, t.routeIndex.byParent
	t.profiles = map[string]profileResult{}
	return t
}

// routesFor returns the routes with a parentRef naming gs's Gateway or one
// of its ListenerSets, in t.routes order: every other route has no parent
// there, so attaching it would be a no-op.
func (t *translator) routesFor(gs *gatewayState) []*gwv1.HTTPRoute {
	idx := slices.Clone(t.routesByParent["g\x00"+gs.name])
	for k := range gs.setsByKey {
		idx = append(idx, t.routesByParent["l\x00"+k]...)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	out := make([]*gwv1.HTTPRoute, len(idx))
	for i, j := range idx {
		out[i] = t.routes[j]
	}
	return out
}

// run translates every gateway of ours — or, given prev, only those reuse
// says changed — and assembles the output from the gateways' parts in
// gateway order, then the statuses that span gateways.
func (t *translator) run(reuse func(gw string) *gatewayFragment) *Output {
	t.acceptClasses()
	t.models = t.indexModels()
	t.indexBackendTLS()
	t.out.frags = make(map[string]*gatewayFragment, len(t.gateways))
	tlsByKey := make(map[string]*tlsPolicy, len(t.tlsPolicies))
	for _, tp := range t.tlsPolicies {
		tlsByKey[key(&tp.p.ObjectMeta)] = tp
	}
	for _, gw := range t.gateways {
		name := key(&gw.ObjectMeta)
		f := reuse(name)
		if f == nil {
			f = t.translateGateway(gw)
		}
		t.out.frags[name] = f
		t.out.Gateways[name] = f.res
		t.out.Status.Gateways[name] = f.status
		for k, st := range f.listenerSets {
			t.out.Status.ListenerSets[k] = st
		}
		for k, ps := range f.routeParents {
			st := t.out.Status.HTTPRoutes[k]
			st.Parents = appendParents(st.Parents, ps)
			t.out.Status.HTTPRoutes[k] = st
		}
		for k, ps := range f.poolParents {
			st := t.out.Status.InferencePools[k]
			st.Parents = appendParents(st.Parents, ps)
			t.out.Status.InferencePools[k] = st
		}
		for k, ps := range f.legacyParents {
			st := t.out.Status.LegacyInferencePools[k]
			st.Parents = appendParents(st.Parents, ps)
			t.out.Status.LegacyInferencePools[k] = st
		}
		for _, id := range f.pools {
			for _, s := range t.models.byPool[id] {
				s.served = true
			}
		}
		for k := range f.tlsPolicies {
			if tp := tlsByKey[k]; tp != nil {
				tp.gateways[name] = gw
			}
		}
	}
	t.orphanedListenerSets()
	t.modelStatuses()
	t.tlsPolicyStatuses()
	return t.out
}

// appendParents adds one gateway fragment's parent entries to an object's
// status. The first fragment's slice is taken as it is (capped, so a second
// fragment's entries are appended to a copy): an object with parents in one
// gateway, which a translation reused, then holds the very slice it held
// before, and the status writer's comparison with the status it last
// wrote is a pointer comparison rather than a walk through every
// condition of thousands of routes on every change.
func appendParents[P any](to, ps []P) []P {
	if to == nil && len(ps) > 0 {
		return ps[:len(ps):len(ps)]
	}
	return append(to, ps...)
}

// read records that the gateway being translated read objects of
// namespace ns (see Changes).
func (t *translator) read(ns string) {
	if t.reading != nil {
		t.reading[ns] = true
	}
}

// acceptClasses picks our GatewayClasses and, through them, our Gateways.
func (t *translator) acceptClasses() {
	for _, c := range t.in.GatewayClasses {
		if string(c.Spec.ControllerName) != t.opts.ControllerName {
			continue
		}
		t.classes[c.Name] = c
		t.out.Status.GatewayClasses[c.Name] = gwv1.GatewayClassStatus{
			Conditions: []metav1.Condition{cond(string(gwv1.GatewayClassConditionStatusAccepted), true,
				string(gwv1.GatewayClassReasonAccepted), "Handled by "+t.opts.ControllerName, c.Generation)},
			SupportedFeatures: featuresFor(t.in.GatewayAPIChannel),
		}
	}
	for _, g := range t.in.Gateways {
		if _, ok := t.classes[string(g.Spec.GatewayClassName)]; ok {
			t.gateways = append(t.gateways, g)
		}
	}
	sort.Slice(t.gateways, func(i, j int) bool { return key(&t.gateways[i].ObjectMeta) < key(&t.gateways[j].ObjectMeta) })
}

func key(m *metav1.ObjectMeta) string {
	return m.Namespace + "/" + m.Name
}

// cond builds a condition; LastTransitionTime stays zero for the writer.
func cond(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// olderFirst orders objects by creation time, then "<ns>/<name>": the
// Gateway API and Inference Extension tie-break for conflicts.
func olderFirst(a, b *metav1.ObjectMeta) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return key(a) < key(b)
}

// podsIn returns the pods of namespace ns sorted by name.
func (t *translator) podsIn(ns string) []*corev1.Pod {
	pods := t.podsByNS[ns]
	if !t.podsSorted[ns] {
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
		t.podsSorted[ns] = true
	}
	return pods
}
