// Package snapshot holds one gateway's complete set of xDS resources and the
// manifest that lets a proxy recognise when it has received all of them.
package snapshot

import (
	"fmt"
	"maps"
	"sort"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Set is one gateway's snapshot: every resource by type URL (sorted by name),
// the Manifest included. Sets are immutable once built.
type Set struct {
	// Gateway is "<namespace>/<name>".
	Gateway string
	// Version is a content hash over all resources: two control-plane
	// replicas that see the same inputs produce the same version.
	Version string
	// Resources holds the Manifest in its compact form (per-type digests);
	// FullManifest is the full form for proxies that do not take it.
	Resources map[string][]snapshotv1.Named
	// refs lists every resource but the Manifest (the full form).
	refs []*snapshotv1.ResourceRef
	// hashes is every resource's content hash by identity, for the next
	// set of the gateway: a translation that reuses a resource (the same
	// message) reuses its hash (see NewSetFrom).
	hashes map[snapshotv1.Named]string
}

// NewSet groups resources by type, hashes them and adds the Manifest. It fails
// on a resource without a name or on two resources of one type sharing a name:
// both would make the proxy's view ambiguous.
func NewSet(gateway string, resources []snapshotv1.Named) (*Set, error) {
	return NewSetFrom(nil, gateway, resources)
}

// NewSetFrom is NewSet taking the hash of every resource prev holds (the
// same message, by identity: sets and their resources are immutable) from
// prev, so a gateway whose translation changed one endpoint list hashes that
// one again, not its thousands of routes. prev may be nil.
func NewSetFrom(prev *Set, gateway string, resources []snapshotv1.Named) (*Set, error) {
	byType := make(map[string][]snapshotv1.Named)
	refs := make([]*snapshotv1.ResourceRef, 0, len(resources))
	hashes := make(map[snapshotv1.Named]string, len(resources))
	seen := make(map[string]bool, len(resources))
	for _, r := range resources {
		if _, ok := r.(*snapshotv1.Manifest); ok {
			return nil, fmt.Errorf("gateway %s: a Manifest is built by NewSet, not passed in", gateway)
		}
		typeURL := snapshotv1.TypeURL(r)
		name := r.GetName()
		if name == "" {
			return nil, fmt.Errorf("gateway %s: %s without a name", gateway, snapshotv1.TypeName(typeURL))
		}
		key := typeURL + "\x00" + name
		if seen[key] {
			return nil, fmt.Errorf("gateway %s: duplicate %s %q", gateway, snapshotv1.TypeName(typeURL), name)
		}
		seen[key] = true
		byType[typeURL] = append(byType[typeURL], r)
		hash, ok := "", false
		if prev != nil {
			hash, ok = prev.hashes[r]
		}
		if !ok {
			hash = snapshotv1.Hash(r)
		}
		hashes[r] = hash
		refs = append(refs, &snapshotv1.ResourceRef{TypeUrl: typeURL, Name: name, Hash: hash})
	}
	snapshotv1.SortRefs(refs)
	for _, rs := range byType {
		sort.Slice(rs, func(i, j int) bool { return rs[i].GetName() < rs[j].GetName() })
	}
	d := xxhash.New()
	for _, ref := range refs {
		_, _ = d.WriteString(ref.TypeUrl + "\x00" + ref.Name + "\x00" + ref.Hash + "\n")
	}
	version := fmt.Sprintf("%016x", d.Sum64())
	byType[snapshotv1.TypeManifest] = []snapshotv1.Named{&snapshotv1.Manifest{Name: gateway, Version: version, Types: snapshotv1.TypeDigests(refs)}}
	return &Set{Gateway: gateway, Version: version, Resources: byType, refs: refs, hashes: hashes}, nil
}

// Manifest returns the set's manifest in its compact form.
func (s *Set) Manifest() *snapshotv1.Manifest {
	return s.Resources[snapshotv1.TypeManifest][0].(*snapshotv1.Manifest)
}

// FullManifest returns the set's manifest in its full form (every resource
// listed), for proxies without snapshotv1.FeatureTypeDigests: the same name,
// version and proxy count as Manifest.
func (s *Set) FullManifest() *snapshotv1.Manifest {
	m := s.Manifest()
	return &snapshotv1.Manifest{Name: m.GetName(), Version: m.GetVersion(), ProxyCount: m.GetProxyCount(), Resources: s.refs}
}

// Refs lists every resource of the set but the Manifest, sorted by type URL
// then name, with its content hash. The slice is shared: do not modify it.
func (s *Set) Refs() []*snapshotv1.ResourceRef {
	return s.refs
}

// ProxyCount is the proxy count the set's Manifest carries (0 = unset).
func (s *Set) ProxyCount() int {
	return int(s.Manifest().GetProxyCount())
}

// WithProxyCount returns s with its Manifest carrying n proxies (see
// Manifest.proxy_count). The count is not configuration: the version and
// every other resource are shared with s, so serving the result re-sends
// only the Manifest. s itself is not modified.
func (s *Set) WithProxyCount(n int) *Set {
	if n == s.ProxyCount() {
		return s
	}
	m := proto.CloneOf(s.Manifest())
	m.ProxyCount = uint32(max(n, 0))
	byType := maps.Clone(s.Resources)
	byType[snapshotv1.TypeManifest] = []snapshotv1.Named{m}
	return &Set{Gateway: s.Gateway, Version: s.Version, Resources: byType, refs: s.refs, hashes: s.hashes}
}

// Count is the number of resources, the Manifest excluded.
func (s *Set) Count() int {
	return len(s.refs)
}

// Any returns the resources of one type (all types when typeURL is empty) as
// Any messages, ordered by type then name, for debugging and dumps.
func (s *Set) Any(typeURL string) ([]*anypb.Any, error) {
	types := make([]string, 0, len(s.Resources))
	for t := range s.Resources {
		if typeURL == "" || t == typeURL {
			types = append(types, t)
		}
	}
	sort.Strings(types)
	var out []*anypb.Any
	for _, t := range types {
		for _, r := range s.Resources[t] {
			a, err := anypb.New(r)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}
