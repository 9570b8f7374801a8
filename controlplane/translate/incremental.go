package translate

import (
	"slices"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Changes say what changed in the inputs since the translation an
// incremental one starts from, as coarsely as it needs: a gateway is
// translated again when it read a namespace with changed objects, or a
// changed HTTPRoute or ListenerSet names it (before or after the change);
// cluster-scoped changes redo everything. Sources build Changes with Note
// from their watch events. The zero value means nothing changed; nil passed
// to TranslateIncremental means unknown (everything).
type Changes struct {
	// All redoes every gateway: a GatewayClass or Namespace changed (or
	// the source cannot tell).
	All bool
	// Namespaces are those with a changed namespaced object.
	Namespaces map[string]bool
	// Endpoints are namespaces where Pods or EndpointSlices changed. They
	// feed endpoint lists alone: a gateway that read such a namespace
	// (and none in Namespaces) lists its endpoints from there again and
	// keeps the rest of its translation — at one pod's readiness change
	// per second per gateway, translating every route again made the
	// control plane fall behind.
	Endpoints map[string]bool
	// Gateways and ListenerSets ("<ns>/<name>") are named as parent by a
	// changed HTTPRoute or ListenerSet, or changed themselves.
	Gateways, ListenerSets map[string]bool
}

// Empty reports whether nothing was noted.
func (c *Changes) Empty() bool {
	return !c.All && len(c.Namespaces) == 0 && len(c.Endpoints) == 0 && len(c.Gateways) == 0 && len(c.ListenerSets) == 0
}

// Note records a change of obj (the old or the new version: note both of an
// update whose parents may differ). Objects of kinds the translator does not
// read still mark their namespace, which only costs work.
func (c *Changes) Note(obj any) {
	if c.All {
		return
	}
	set := func(m *map[string]bool, k string) {
		if *m == nil {
			*m = map[string]bool{}
		}
		(*m)[k] = true
	}
	// Gateways, routes and ListenerSets matter to the gateways they are or
	// name, not to others reading their namespace.
	switch o := obj.(type) {
	case *gwv1.GatewayClass, *corev1.Namespace:
		c.All = true
		return
	case *corev1.Pod:
		set(&c.Endpoints, o.Namespace)
		return
	case *discoveryv1.EndpointSlice:
		set(&c.Endpoints, o.Namespace)
		return
	case *gwv1.Gateway:
		set(&c.Gateways, key(&o.ObjectMeta))
		return
	case *gwv1.HTTPRoute:
		for _, pr := range o.Spec.ParentRefs {
			if refersToKind(pr, kindGateway) {
				set(&c.Gateways, parentNamespace(pr, o.Namespace)+"/"+string(pr.Name))
			} else if k := setParentKey(pr, o.Namespace); k != "" {
				set(&c.ListenerSets, k)
			}
		}
		return
	case *gwv1.ListenerSet:
		set(&c.ListenerSets, key(&o.ObjectMeta))
		p := o.Spec.ParentRef
		pr := gwv1.ParentReference{Group: p.Group, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
		if refersToKind(pr, kindGateway) {
			set(&c.Gateways, parentNamespace(pr, o.Namespace)+"/"+string(pr.Name))
		}
		return
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		c.All = true
		return
	}
	if ns := m.GetNamespace(); ns != "" {
		set(&c.Namespaces, ns)
	} else {
		// A cluster-scoped kind not listed above: be safe.
		c.All = true
	}
}

// Merge adds o's changes to c.
func (c *Changes) Merge(o *Changes) {
	if o.All {
		c.All = true
	}
	for _, m := range []struct{ dst, src *map[string]bool }{
		{&c.Namespaces, &o.Namespaces}, {&c.Endpoints, &o.Endpoints}, {&c.Gateways, &o.Gateways}, {&c.ListenerSets, &o.ListenerSets},
	} {
		for k := range *m.src {
			if *m.dst == nil {
				*m.dst = map[string]bool{}
			}
			(*m.dst)[k] = true
		}
	}
}

// TranslateIncremental is Translate for inputs that differ from those prev
// was translated from by changes: a gateway the changes cannot affect keeps
// its part of prev (the same *GatewayResources, its statuses), the others
// are translated again, and the statuses spanning gateways are computed
// anew. The result is Translate(in, opts)'s whenever changes cover every
// difference (tests check this on random edits of every golden input).
// prev nil or changes nil translate everything; changes that are Empty
// (only statuses the translator does not read were written, such as its
// own) return prev itself. A pure function, like Translate.
func TranslateIncremental(prev *Output, in *Inputs, opts Options, changes *Changes) *Output {
	if opts.ControllerName == "" {
		opts.ControllerName = DefaultControllerName
	}
	if in == nil {
		in = &Inputs{}
	}
	if prev != nil && changes != nil && changes.Empty() && prev.opts == opts && prev.channel == in.GatewayAPIChannel {
		return prev
	}
	var prevRoutes *routeIndex
	if prev != nil {
		prevRoutes = prev.routes
	}
	t := newTranslator(in, opts, prevRoutes)
	t.out.opts, t.out.channel, t.out.routes = opts, in.GatewayAPIChannel, t.routeIndex
	full := prev == nil || changes == nil || changes.All || prev.opts != opts || prev.channel != in.GatewayAPIChannel
	dirtyGateways := map[string]bool{}
	if !full {
		for g := range changes.Gateways {
			dirtyGateways[g] = true
		}
		// A changed ListenerSet (or a route naming one) affects the
		// gateway it is attached to now and the one it was attached to.
		for _, ls := range in.ListenerSets {
			if changes.ListenerSets[key(&ls.ObjectMeta)] {
				p := ls.Spec.ParentRef
				pr := gwv1.ParentReference{Group: p.Group, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
				dirtyGateways[parentNamespace(pr, ls.Namespace)+"/"+string(pr.Name)] = true
			}
		}
		for g, f := range prev.frags {
			for k := range f.listenerSets {
				if changes.ListenerSets[k] {
					dirtyGateways[g] = true
				}
			}
		}
	}
	return t.run(func(gw string) *gatewayFragment {
		if full || dirtyGateways[gw] {
			return nil
		}
		f := prev.frags[gw]
		if f == nil {
			return nil
		}
		refresh := false
		for ns := range f.reads {
			if changes.Namespaces[ns] {
				return nil
			}
			refresh = refresh || changes.Endpoints[ns]
		}
		if refresh {
			return t.refreshEndpoints(f, changes.Endpoints)
		}
		return f
	})
}

// endpointSource lists one Endpoints resource of a gateway from the Pods
// and EndpointSlices of namespace ns (and the objects selecting them,
// looked up again by name).
type endpointSource struct {
	ns   string
	list func(*translator) []*snapshotv1.Endpoint
}

// refreshEndpoints is f with the Endpoints resources listed from the
// namespaces in changed listed again, for inputs where nothing else f read
// changed: nothing but endpoint lists can differ. f itself when none does.
func (t *translator) refreshEndpoints(f *gatewayFragment, changed map[string]bool) *gatewayFragment {
	var eps []*snapshotv1.Endpoints
	for i, e := range f.res.Endpoints {
		src, ok := f.endpointSources[e.Name]
		if !ok || !changed[src.ns] {
			continue
		}
		fresh := &snapshotv1.Endpoints{Name: e.Name, Endpoints: cleanEndpoints(src.list(t))}
		if proto.Equal(fresh, e) {
			continue
		}
		if eps == nil {
			eps = slices.Clone(f.res.Endpoints)
		}
		eps[i] = fresh
	}
	if eps == nil {
		return f
	}
	res := *f.res
	res.Endpoints = eps
	nf := *f
	nf.res = &res
	return &nf
}

// gatewayFragment is one gateway's part of an Output, and what it was
// computed from. Immutable once built.
type gatewayFragment struct {
	res           *GatewayResources
	status        gwv1.GatewayStatus
	listenerSets  map[string]gwv1.ListenerSetStatus
	routeParents  map[string][]gwv1.RouteParentStatus
	poolParents   map[string][]infv1.ParentStatus
	legacyParents map[string][]inferencealpha.PoolStatus
	// pools are the identities of the pools its routes reference (their
	// model rules are served), tlsPolicies the BackendTLSPolicies whose
	// ancestor it is.
	pools       []string
	tlsPolicies map[string]bool
	// reads are the namespaces whose objects its translation read.
	reads map[string]bool
	// endpointSources list its Endpoints resources again (by name).
	endpointSources map[string]endpointSource
}

func newFragment() *gatewayFragment {
	return &gatewayFragment{
		listenerSets:  map[string]gwv1.ListenerSetStatus{},
		routeParents:  map[string][]gwv1.RouteParentStatus{},
		poolParents:   map[string][]infv1.ParentStatus{},
		legacyParents: map[string][]inferencealpha.PoolStatus{},
		tlsPolicies:   map[string]bool{},
		reads:         map[string]bool{},
	}
}
