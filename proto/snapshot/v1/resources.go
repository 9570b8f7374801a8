package snapshotv1

import (
	"encoding/hex"
	"strings"

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
// encoding. The control plane lists it in the Manifest; it is also the hash
// of the bytes it sends, since its xDS server encodes resources the same way
// (deterministically, in the same binary). A proxy checks what it received
// with HashBytes over those bytes, never by encoding the decoded message
// again: protobuf promises a deterministic encoding only within one binary,
// so a proxy of another version could disagree forever.
func Hash(m proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field can fail here; such a resource
		// never matches any manifest hash, which is the safe outcome.
		return "invalid:" + err.Error()
	}
	return HashBytes(b)
}

// HashBytes is the content hash of an encoded resource (see Hash).
func HashBytes(b []byte) string {
	var sum [8]byte
	h := xxhash.Sum64(b)
	for i := 7; i >= 0; i-- {
		sum[i] = byte(h)
		h >>= 8
	}
	return hex.EncodeToString(sum[:])
}

// TypeName is the short name of a type URL, e.g. "Route" for TypeRoute
// (also for Envoy's and any other "…/pkg.Name" URL), for logs, metrics and
// messages.
func TypeName(typeURL string) string {
	s := typeURL[strings.LastIndexByte(typeURL, '/')+1:]
	return s[strings.LastIndexByte(s, '.')+1:]
}

// TypeURL is the type URL of a snapshot resource.
func TypeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// Resource is a snapshot resource as a proxy holds it: the message and the
// content hash of the bytes it arrived as.
type Resource struct {
	Message Named
	Hash    string
}

// Resources is the state a proxy holds: type URL → resource name →
// resource. A Resources value handed on by the xDS client is never modified
// afterwards, so it may be kept.
type Resources map[string]map[string]Resource

// Add holds m under its type URL with its content hash (Hash): for
// resources built in process rather than received.
func (r Resources) Add(m Named) {
	t := TypeURL(m)
	if r[t] == nil {
		r[t] = map[string]Resource{}
	}
	r[t][m.GetName()] = Resource{Message: m, Hash: Hash(m)}
}

// Manifest returns the Manifest held, or nil when there is none or more than
// one. Unlike Complete it does not check the other resources.
func (r Resources) Manifest() *Manifest {
	if len(r[TypeManifest]) != 1 {
		return nil
	}
	return r.anyManifest()
}

func (r Resources) anyManifest() *Manifest {
	for _, v := range r[TypeManifest] {
		m, _ := v.Message.(*Manifest)
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
