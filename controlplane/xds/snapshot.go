package xds

import (
	"fmt"
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/infergate/infergate/controlplane/snapshot"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// emptyVersion is the system version of the snapshot served to a gateway the
// control plane has no resources for: its proxies see every resource removed.
const emptyVersion = "empty"

// resourceSnapshot adapts a snapshot.Set to go-control-plane's
// cache.ResourceSnapshot. The stock cache.Snapshot stores resources in an
// array indexed by the built-in Envoy types and rejects any other type URL
// ("unknown resource type"), so custom types need their own implementation of
// the interface; the snapshot cache itself is type-agnostic.
type resourceSnapshot struct {
	version   string
	resources map[string]map[string]types.Resource
	ttl       map[string]map[string]types.ResourceWithTTL
	// versions holds, per type and name, the per-resource version the delta
	// server compares against what a client reports it holds. It must be the
	// same string the server puts in discovery.Resource.version, and
	// go-control-plane computes that one itself as
	// HashResource(MarshalResource(r)) (hex sha256 of the deterministic
	// encoding), ignoring the version map. Any other value would make every
	// resumed stream resend every resource.
	versions map[string]map[string]string
}

var _ cachev3.ResourceSnapshot = (*resourceSnapshot)(nil)

// newResourceSnapshot indexes a set and computes every resource's xDS
// version, taking those of resources prev (the gateway's previous snapshot,
// may be nil) holds — the same message, by identity — from prev: a change
// to one endpoint list encodes and hashes that one, not every route.
func newResourceSnapshot(set *snapshot.Set, prev *resourceSnapshot) (*resourceSnapshot, error) {
	s := &resourceSnapshot{
		version:   set.Version,
		resources: make(map[string]map[string]types.Resource, len(set.Resources)),
		ttl:       make(map[string]map[string]types.ResourceWithTTL, len(set.Resources)),
		versions:  make(map[string]map[string]string, len(set.Resources)),
	}
	for typeURL, rs := range set.Resources {
		var before map[string]types.Resource
		var versions map[string]string
		if prev != nil {
			before, versions = prev.resources[typeURL], prev.versions[typeURL]
		}
		if err := s.index(set.Gateway, typeURL, rs, before, versions); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// withManifest returns a copy of s serving m as its Manifest, every other
// type shared with s: what a proxy-count change re-publishes, and the form
// of s for proxies that take the full Manifest. m must describe s's
// resources at s's version.
func (s *resourceSnapshot) withManifest(gateway string, m *snapshotv1.Manifest) (*resourceSnapshot, error) {
	c := &resourceSnapshot{
		version:   s.version,
		resources: maps.Clone(s.resources),
		ttl:       maps.Clone(s.ttl),
		versions:  maps.Clone(s.versions),
	}
	return c, c.index(gateway, snapshotv1.TypeManifest, []snapshotv1.Named{m}, nil, nil)
}

// index adds the resources of one type, replacing what s held of it. A
// resource that before holds under its name (the same message) keeps its
// version from prevVersions.
func (s *resourceSnapshot) index(gateway, typeURL string, rs []snapshotv1.Named, before map[string]types.Resource, prevVersions map[string]string) error {
	byName := make(map[string]types.Resource, len(rs))
	withTTL := make(map[string]types.ResourceWithTTL, len(rs))
	versions := make(map[string]string, len(rs))
	for _, r := range rs {
		name := r.GetName()
		if old, ok := before[name]; ok && old == types.Resource(r) {
			if v, ok := prevVersions[name]; ok {
				byName[name] = r
				withTTL[name] = types.ResourceWithTTL{Resource: r}
				versions[name] = v
				continue
			}
		}
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return fmt.Errorf("gateway %s: marshal %s %q: %w", gateway, typeURL, name, err)
		}
		byName[name] = r
		withTTL[name] = types.ResourceWithTTL{Resource: r}
		versions[name] = cachev3.HashResource(b)
	}
	s.resources[typeURL] = byName
	s.ttl[typeURL] = withTTL
	s.versions[typeURL] = versions
	return nil
}

// emptySnapshot has no resource of any type.
func emptySnapshot() *resourceSnapshot {
	return &resourceSnapshot{version: emptyVersion}
}

// GetVersion is the gateway's snapshot version, the same for every type: it
// travels as system_version_info and lets the server tell which snapshot a
// proxy ACKed.
func (s *resourceSnapshot) GetVersion(string) string { return s.version }

func (s *resourceSnapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.ttl[typeURL]
}

func (s *resourceSnapshot) GetResources(typeURL string) map[string]types.Resource {
	return s.resources[typeURL]
}

// ConstructVersionMap is a no-op: versions are computed when the snapshot is
// built, outside the cache's lock.
func (s *resourceSnapshot) ConstructVersionMap() error { return nil }

func (s *resourceSnapshot) GetVersionMap(typeURL string) map[string]string {
	return s.versions[typeURL]
}

// Node metadata keys a proxy sets to say what it serves.
const (
	MetadataGateway = "gateway"
	MetadataPod     = "pod"
)

// gatewayHash keys the snapshot cache by gateway rather than by node: every
// proxy of one gateway shares that gateway's snapshot — one of two forms of
// it: proxies that list snapshotv1.FeatureTypeDigests get the compact
// Manifest under the gateway's name, older ones the full Manifest under
// fullManifestKey(gateway).
type gatewayHash struct{}

func (gatewayHash) ID(node *corev3.Node) string {
	gw := nodeGateway(node)
	if slices.Contains(node.GetClientFeatures(), snapshotv1.FeatureTypeDigests) {
		return gw
	}
	return fullManifestKey(gw)
}

// fullManifestKey is the cache key of gw's snapshot with the full Manifest.
// No gateway name contains a NUL, so it never collides with one.
func fullManifestKey(gw string) string { return gw + "\x00full" }

func nodeGateway(node *corev3.Node) string {
	return node.GetMetadata().GetFields()[MetadataGateway].GetStringValue()
}

func nodePod(node *corev3.Node) string {
	return node.GetMetadata().GetFields()[MetadataPod].GetStringValue()
}
