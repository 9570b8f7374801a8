// Package configtest builds complete snapshot resource sets (with their
// Manifest) for tests of the data plane, the way the control plane does.
package configtest

import (
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Resources holds rs by type URL with their hashes and adds the Manifest
// describing them in its compact form (per-type digests) as the control
// plane sends it, so config.Compile accepts the set as complete.
func Resources(gateway string, rs ...snapshotv1.Named) snapshotv1.Resources {
	out := snapshotv1.Resources{}
	for _, r := range rs {
		out.Add(r)
	}
	mf := &snapshotv1.Manifest{Name: gateway, Types: snapshotv1.TypeDigests(snapshotv1.Refs(rs))}
	mf.Version = snapshotv1.Hash(mf)
	out.Add(mf)
	return out
}
