package xdsclient

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Resources is the full state a proxy holds: type URL → resource name →
// resource (a *snapshotv1.Listener, *snapshotv1.Route, ...). A Resources value
// handed to a Handler is never modified afterwards, so it may be kept.
type Resources map[string]map[string]proto.Message

// Complete reports whether r holds exactly one consistent snapshot: a Manifest
// is present, every resource it lists is present with the listed content
// hash, and nothing else is held. A proxy compiles only complete states, so a
// snapshot that is still arriving type by type is never served half-applied.
// The manifest is returned whenever one is held, complete or not.
func (r Resources) Complete() (*snapshotv1.Manifest, bool) {
	var m *snapshotv1.Manifest
	for _, v := range r[snapshotv1.TypeManifest] {
		if m != nil {
			return m, false // two manifests: two gateways' state mixed
		}
		m, _ = v.(*snapshotv1.Manifest)
	}
	if m == nil {
		return nil, false
	}
	held := 0
	for typeURL, byName := range r {
		if typeURL != snapshotv1.TypeManifest {
			held += len(byName)
		}
	}
	if held != len(m.GetResources()) {
		return m, false
	}
	for _, ref := range m.GetResources() {
		got, ok := r[ref.GetTypeUrl()][ref.GetName()]
		if !ok || snapshotv1.Hash(got) != ref.GetHash() {
			return m, false
		}
	}
	return m, true
}

// Manifest returns the Manifest held, or nil when there is none or more than
// one. Unlike Complete it does not check the other resources.
func (r Resources) Manifest() *snapshotv1.Manifest {
	ms := r[snapshotv1.TypeManifest]
	if len(ms) != 1 {
		return nil
	}
	for _, v := range ms {
		m, _ := v.(*snapshotv1.Manifest)
		return m
	}
	return nil
}

// Empty reports whether no resource at all is held: the control plane serves
// nothing for this gateway (it was deleted, or never existed).
func (r Resources) Empty() bool {
	for _, byName := range r {
		if len(byName) > 0 {
			return false
		}
	}
	return true
}

// newMessage returns an empty message for a snapshot type URL. Only the known
// snapshot types are accepted: anything else is a protocol error to NACK.
func newMessage(typeURL string) (snapshotv1.Named, error) {
	switch typeURL {
	case snapshotv1.TypeManifest:
		return &snapshotv1.Manifest{}, nil
	case snapshotv1.TypeListener:
		return &snapshotv1.Listener{}, nil
	case snapshotv1.TypeRoute:
		return &snapshotv1.Route{}, nil
	case snapshotv1.TypeBackend:
		return &snapshotv1.Backend{}, nil
	case snapshotv1.TypeEndpoints:
		return &snapshotv1.Endpoints{}, nil
	case snapshotv1.TypeModelRule:
		return &snapshotv1.ModelRule{}, nil
	}
	return nil, fmt.Errorf("unknown resource type %q", typeURL)
}
