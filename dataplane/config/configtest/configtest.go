// Package configtest builds complete snapshot resource sets (with their
// Manifest) for tests of the data plane, the way the control plane does.
package configtest

import (
	"sort"

	"google.golang.org/protobuf/proto"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Resources groups resources by type URL and adds the Manifest listing them
// with their hashes, so config.Compile accepts the set as complete.
func Resources(gateway string, rs ...snapshotv1.Named) map[string]map[string]proto.Message {
	out := map[string]map[string]proto.Message{}
	mf := &snapshotv1.Manifest{Name: gateway, Version: "test"}
	for _, r := range rs {
		t := "type.googleapis.com/" + string(r.ProtoReflect().Descriptor().FullName())
		if out[t] == nil {
			out[t] = map[string]proto.Message{}
		}
		out[t][r.GetName()] = r
		mf.Resources = append(mf.Resources, &snapshotv1.ResourceRef{TypeUrl: t, Name: r.GetName(), Hash: snapshotv1.Hash(r)})
	}
	sort.Slice(mf.Resources, func(i, j int) bool {
		a, b := mf.Resources[i], mf.Resources[j]
		if a.TypeUrl != b.TypeUrl {
			return a.TypeUrl < b.TypeUrl
		}
		return a.Name < b.Name
	})
	mf.Version = snapshotv1.Hash(mf)
	out[snapshotv1.TypeManifest] = map[string]proto.Message{gateway: mf}
	return out
}
