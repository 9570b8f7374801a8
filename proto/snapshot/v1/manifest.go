package snapshotv1

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// FeatureTypeDigests is the xDS client feature (Node.client_features) of a
// proxy that accepts the Manifest's compact form (Manifest.types): a control
// plane sends the full list of resources only to clients without it, such
// as proxies of a release before the compact form.
const FeatureTypeDigests = "infergate.snapshot.v1.Manifest.types"

// ErrIncomplete reports that the resources held are not (yet) the snapshot
// their Manifest describes: a snapshot is still arriving type by type. It is
// not a validation failure; a proxy waits for the rest.
var ErrIncomplete = errors.New("snapshot incomplete")

// Refs lists resources as the Manifest's full form does, sorted by type URL
// then name, each with its content hash (Hash).
func Refs(rs []Named) []*ResourceRef {
	refs := make([]*ResourceRef, 0, len(rs))
	for _, r := range rs {
		refs = append(refs, &ResourceRef{TypeUrl: TypeURL(r), Name: r.GetName(), Hash: Hash(r)})
	}
	SortRefs(refs)
	return refs
}

// SortRefs sorts refs as the Manifest's full form lists them: by type URL,
// then name.
func SortRefs(refs []*ResourceRef) {
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].TypeUrl != refs[j].TypeUrl {
			return refs[i].TypeUrl < refs[j].TypeUrl
		}
		return refs[i].Name < refs[j].Name
	})
}

// TypeDigests is the Manifest's compact form of refs: one TypeDigest per
// type URL present, sorted by type URL.
func TypeDigests(refs []*ResourceRef) []*TypeDigest {
	byType := map[string]*TypeDigest{}
	var out []*TypeDigest
	for _, ref := range refs {
		d := byType[ref.GetTypeUrl()]
		if d == nil {
			d = &TypeDigest{TypeUrl: ref.GetTypeUrl()}
			byType[ref.GetTypeUrl()] = d
			out = append(out, d)
		}
		d.Count++
		d.Digest += digestTerm(ref.GetName(), ref.GetHash())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TypeUrl < out[j].TypeUrl })
	return out
}

// digestTerm is one resource's term of a TypeDigest: xxhash64(name, 0x00,
// hash).
func digestTerm(name, hash string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(name)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(hash)
	return d.Sum64()
}

// Complete reports whether r holds exactly one consistent snapshot (see
// Check). The manifest is returned whenever one is held, complete or not.
func (r Resources) Complete() (*Manifest, bool) {
	m, err := r.Check()
	return m, err == nil
}

// Check returns nil when r holds exactly one consistent snapshot: one
// Manifest, and exactly the resources it describes with the content hashes
// of the bytes they arrived as — in its full form every listed resource and
// nothing else, in its compact form, per type, as many resources as listed
// whose digest is the listed one (a manifest carrying both forms must
// satisfy both). A proxy compiles only complete states, so a snapshot that is
// still arriving type by type is never served half-applied. Otherwise the
// error says what differs and wraps ErrIncomplete, except for two Manifests
// held at once (two gateways' state mixed) or a Manifest listing a type
// twice, which no later response mends.
// The manifest is returned whenever one is held.
func (r Resources) Check() (*Manifest, error) {
	if n := len(r[TypeManifest]); n != 1 {
		if n == 0 {
			return nil, fmt.Errorf("%w: no manifest", ErrIncomplete)
		}
		// Two gateways' state mixed; any one of them is returned.
		return r.anyManifest(), fmt.Errorf("%d manifests; a proxy serves exactly one gateway", n)
	}
	m := r.anyManifest()
	if m == nil {
		return nil, fmt.Errorf("manifest has type %T", r.anyResource(TypeManifest).Message)
	}
	if len(m.GetResources()) > 0 || len(m.GetTypes()) == 0 {
		if err := r.checkRefs(m.GetResources()); err != nil {
			return m, err
		}
	}
	if len(m.GetTypes()) > 0 {
		if err := r.checkDigests(m.GetTypes()); err != nil {
			return m, err
		}
	}
	return m, nil
}

// checkRefs checks r against the Manifest's full form.
func (r Resources) checkRefs(refs []*ResourceRef) error {
	for _, ref := range refs {
		got, ok := r[ref.GetTypeUrl()][ref.GetName()]
		if !ok {
			return fmt.Errorf("%w: %s %q missing", ErrIncomplete, TypeName(ref.GetTypeUrl()), ref.GetName())
		}
		if got.Hash != ref.GetHash() {
			return fmt.Errorf("%w: %s %q has hash %s, manifest wants %s", ErrIncomplete, TypeName(ref.GetTypeUrl()), ref.GetName(), got.Hash, ref.GetHash())
		}
	}
	if held := r.held(); held != len(refs) {
		return fmt.Errorf("%w: %d resources held, manifest lists %d", ErrIncomplete, held, len(refs))
	}
	return nil
}

// checkDigests checks r against the Manifest's compact form.
func (r Resources) checkDigests(types []*TypeDigest) error {
	for i, t := range types {
		for _, u := range types[:i] {
			if t.GetTypeUrl() == u.GetTypeUrl() {
				// No later response mends a malformed manifest: NACK it.
				return fmt.Errorf("manifest lists type %s twice", TypeName(t.GetTypeUrl()))
			}
		}
	}
	listed := 0
	for _, want := range types {
		byName := r[want.GetTypeUrl()]
		if len(byName) != int(want.GetCount()) {
			return fmt.Errorf("%w: %d %s resources held, manifest lists %d", ErrIncomplete, len(byName), TypeName(want.GetTypeUrl()), want.GetCount())
		}
		var sum uint64
		for name, res := range byName {
			sum += digestTerm(name, res.Hash)
		}
		if sum != want.GetDigest() {
			return fmt.Errorf("%w: the %d %s resources held differ from the manifest's (digest %016x, manifest wants %016x)", ErrIncomplete, len(byName), TypeName(want.GetTypeUrl()), sum, want.GetDigest())
		}
		listed += len(byName)
	}
	if held := r.held(); held != listed {
		for typeURL, byName := range r {
			if typeURL != TypeManifest && len(byName) > 0 && !listsType(types, typeURL) {
				return fmt.Errorf("%w: %d %s resources held, manifest lists none", ErrIncomplete, len(byName), TypeName(typeURL))
			}
		}
		return fmt.Errorf("%w: %d resources held, manifest lists %d", ErrIncomplete, held, listed)
	}
	return nil
}

func listsType(types []*TypeDigest, typeURL string) bool {
	for _, t := range types {
		if t.GetTypeUrl() == typeURL {
			return true
		}
	}
	return false
}

// held counts the resources held, Manifests excluded.
func (r Resources) held() int {
	n := 0
	for typeURL, byName := range r {
		if typeURL != TypeManifest {
			n += len(byName)
		}
	}
	return n
}

func (r Resources) anyResource(typeURL string) Resource {
	for _, v := range r[typeURL] {
		return v
	}
	return Resource{}
}
