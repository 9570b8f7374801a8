package xdsclient

import (
	"fmt"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Resources is the full state the client holds, each resource with the
// hash of the bytes it arrived as (snapshotv1.HashBytes): what the
// Manifest's hashes are checked against.
type Resources = snapshotv1.Resources

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
