// Package configtest builds complete snapshot resource sets (with their
// Manifest) for tests of the data plane, the way the control plane does.
package configtest

import (
	"sort"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Resources holds rs by type URL with their hashes and adds the Manifest
// listing them, so config.Compile accepts the set as complete.
func Resources(gateway string, rs ...snapshotv1.Named) snapshotv1.Resources {
	out := snapshotv1.Resources{}
	mf := &snapshotv1.Manifest{Name: gateway, Version: "test"}
	for _, r := range rs {
		out.Add(r)
		mf.Resources = append(mf.Resources, &snapshotv1.ResourceRef{TypeUrl: snapshotv1.TypeURL(r), Name: r.GetName(), Hash: snapshotv1.Hash(r)})
	}
	sort.Slice(mf.Resources, func(i, j int) bool {
		a, b := mf.Resources[i], mf.Resources[j]
		if a.TypeUrl != b.TypeUrl {
			return a.TypeUrl < b.TypeUrl
		}
		return a.Name < b.Name
	})
	mf.Version = snapshotv1.Hash(mf)
	out.Add(mf)
	return out
}
