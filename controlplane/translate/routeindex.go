package translate

import (
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// routeIndex is the translator's index of the HTTPRoutes: sorted by
// "<ns>/<name>", and by the parents they name. It is computed from the
// routes alone, so a translation of inputs holding the very same route
// objects (the cache makes a new object for every change) reuses the
// previous one: at thousands of routes, building it was most of what a
// pass of pod churn cost beyond the pods themselves.
type routeIndex struct {
	routes []*gwv1.HTTPRoute
	// byParent lists, per Gateway ("g\x00<ns>/<name>") and ListenerSet
	// ("l\x00<ns>/<name>") a parentRef may name, the indexes in routes of
	// the routes naming it.
	byParent map[string][]int
	// set holds routes, to tell whether the next inputs hold the same.
	set map[*gwv1.HTTPRoute]struct{}
}

// indexRoutes indexes rs, or returns prev when it indexed exactly rs (in
// any order). prev may be nil.
func indexRoutes(rs []*gwv1.HTTPRoute, prev *routeIndex) *routeIndex {
	if prev != nil && prev.holdsExactly(rs) {
		return prev
	}
	// Sorted by "<ns>/<name>", each key built once (not in every
	// comparison).
	type keyed struct {
		k string
		r *gwv1.HTTPRoute
	}
	ks := make([]keyed, len(rs))
	for i, r := range rs {
		ks[i] = keyed{key(&r.ObjectMeta), r}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.k, b.k) })
	x := &routeIndex{
		routes:   make([]*gwv1.HTTPRoute, len(ks)),
		byParent: map[string][]int{},
		set:      make(map[*gwv1.HTTPRoute]struct{}, len(ks)),
	}
	for i, kr := range ks {
		x.routes[i] = kr.r
		x.set[kr.r] = struct{}{}
	}
	for i, r := range x.routes {
		for _, pr := range r.Spec.ParentRefs {
			var k string
			if refersToKind(pr, kindGateway) {
				k = "g\x00" + parentNamespace(pr, r.Namespace) + "/" + string(pr.Name)
			} else if sk := setParentKey(pr, r.Namespace); sk != "" {
				k = "l\x00" + sk
			} else {
				continue
			}
			// A route naming one parent twice (two sections) is listed once.
			if idx := x.byParent[k]; len(idx) == 0 || idx[len(idx)-1] != i {
				x.byParent[k] = append(idx, i)
			}
		}
	}
	return x
}

// holdsExactly reports whether x indexed exactly the routes rs (the same
// objects).
func (x *routeIndex) holdsExactly(rs []*gwv1.HTTPRoute) bool {
	if len(rs) != len(x.set) {
		return false
	}
	for _, r := range rs {
		if _, ok := x.set[r]; !ok {
			return false
		}
	}
	return true
}
