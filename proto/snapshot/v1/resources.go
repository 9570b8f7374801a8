package snapshotv1

import (
	"encoding/hex"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"
)

// Type URLs of the snapshot resources, as they travel in xDS.
const (
	TypeManifest  = "type.googleapis.com/infergate.snapshot.v1.Manifest"
	TypeListener  = "type.googleapis.com/infergate.snapshot.v1.Listener"
	TypeRoute     = "type.googleapis.com/infergate.snapshot.v1.Route"
	TypeBackend   = "type.googleapis.com/infergate.snapshot.v1.Backend"
	TypeEndpoints = "type.googleapis.com/infergate.snapshot.v1.Endpoints"
	TypeModelRule = "type.googleapis.com/infergate.snapshot.v1.ModelRule"
)

// Types lists every resource type a proxy subscribes to. The Manifest comes
// last so that, on a fresh stream, the resources it names tend to arrive first.
func Types() []string {
	return []string{TypeListener, TypeRoute, TypeBackend, TypeEndpoints, TypeModelRule, TypeManifest}
}

// Named is implemented by every snapshot resource.
type Named interface {
	proto.Message
	GetName() string
}

// Hash is the content hash of a resource: hex xxhash64 of its deterministic
// encoding. Control plane and proxy compute it the same way, so a proxy can
// check a resource against the Manifest entry naming it.
func Hash(m proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field can fail here; such a resource
		// never matches any manifest hash, which is the safe outcome.
		return "invalid:" + err.Error()
	}
	var sum [8]byte
	h := xxhash.Sum64(b)
	for i := 7; i >= 0; i-- {
		sum[i] = byte(h)
		h >>= 8
	}
	return hex.EncodeToString(sum[:])
}
