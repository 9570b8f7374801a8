package snapshotv1_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

type Resources = snapshotv1.Resources

// manifestOf is the full form of a manifest of rs.
func manifestOf(rs ...snapshotv1.Named) *snapshotv1.Manifest {
	return &snapshotv1.Manifest{Name: "default/a", Version: "v", Resources: snapshotv1.Refs(rs)}
}

// compactOf is the compact form of a manifest of rs.
func compactOf(rs ...snapshotv1.Named) *snapshotv1.Manifest {
	return &snapshotv1.Manifest{Name: "default/a", Version: "v", Types: snapshotv1.TypeDigests(snapshotv1.Refs(rs))}
}

// bothOf carries both forms.
func bothOf(rs ...snapshotv1.Named) *snapshotv1.Manifest {
	m := manifestOf(rs...)
	m.Types = compactOf(rs...).Types
	return m
}

func hold(m *snapshotv1.Manifest, rs ...snapshotv1.Named) Resources {
	out := Resources{}
	if m != nil {
		out.Add(m)
	}
	for _, r := range rs {
		out.Add(r)
	}
	return out
}

func TestComplete(t *testing.T) {
	l := &snapshotv1.Listener{Name: "default/a/http", Port: 80}
	r := &snapshotv1.Route{Name: "default/a/default/r/0", Route: "default/r"}
	r2 := &snapshotv1.Route{Name: "default/a/default/r/0", Route: "default/r", RuleIndex: 1}
	r3 := &snapshotv1.Route{Name: "default/a/default/r/1", Route: "default/r", RuleIndex: 1}
	extra := &snapshotv1.Backend{Name: "default/a/service/default/x:80"}
	// Two names holding each other's resource: the type's count and the
	// set of hashes are right, so the digest must bind names to hashes.
	swapped := func(m *snapshotv1.Manifest) Resources {
		res := hold(m, l)
		res[snapshotv1.TypeRoute] = map[string]snapshotv1.Resource{
			r.Name:  {Message: r3, Hash: snapshotv1.Hash(r3)},
			r3.Name: {Message: r, Hash: snapshotv1.Hash(r)},
		}
		return res
	}

	for form, of := range map[string]func(...snapshotv1.Named) *snapshotv1.Manifest{
		"full": manifestOf, "compact": compactOf, "both": bothOf,
	} {
		m := of(l, r, r3)
		cases := []struct {
			name string
			res  Resources
			want bool
		}{
			{"all present", hold(m, l, r, r3), true},
			{"no manifest", hold(nil, l, r, r3), false},
			{"missing resource", hold(m, l, r), false},
			{"missing type", hold(m, r, r3), false},
			{"stale content", hold(m, l, r2, r3), false},
			{"contents swapped", swapped(m), false},
			{"extra resource", hold(m, l, r, r3, extra), false},
			{"extra resource of a listed type", hold(of(l, r), l, r, r3), false},
			{"empty", Resources{}, false},
			{"empty manifest, nothing held", hold(of()), true},
			{"empty manifest, something held", hold(of(), l), false},
		}
		for _, tc := range cases {
			got, ok := tc.res.Complete()
			if ok != tc.want {
				t.Errorf("%s form, %s: Complete() = %v, want %v", form, tc.name, ok, tc.want)
			}
			if tc.res[snapshotv1.TypeManifest] != nil && got == nil {
				t.Errorf("%s form, %s: manifest not returned", form, tc.name)
			}
			if _, err := tc.res.Check(); !ok && !errors.Is(err, snapshotv1.ErrIncomplete) {
				t.Errorf("%s form, %s: Check() = %v, want ErrIncomplete", form, tc.name, err)
			}
		}
	}
	two := hold(manifestOf(l), l)
	two.Add(&snapshotv1.Manifest{Name: "default/b", Version: "w"})
	if m, err := two.Check(); m == nil || err == nil || errors.Is(err, snapshotv1.ErrIncomplete) {
		t.Errorf("two manifests: Check() = %v, %v; want a manifest and an error that is not ErrIncomplete", m, err)
	}
	twice := compactOf(l, r)
	twice.Types = append(twice.Types, twice.Types[0])
	if _, err := hold(twice, l, r).Check(); err == nil || errors.Is(err, snapshotv1.ErrIncomplete) {
		t.Errorf("a type listed twice: Check() = %v, want an error that is not ErrIncomplete", err)
	}
	m := manifestOf(l, r)
	if !(Resources{}).Empty() || hold(m).Empty() {
		t.Error("Empty() wrong")
	}
	if !(Resources{snapshotv1.TypeRoute: {}}).Empty() {
		t.Error("a type with no resources is empty")
	}
}

func TestManifest(t *testing.T) {
	l := &snapshotv1.Listener{Name: "default/a/http", Port: 80}
	m := manifestOf(l)
	// Incomplete states still name their Manifest (the proxy count in it
	// applies whatever else is held).
	if got := hold(m).Manifest(); got != m {
		t.Errorf("Manifest() = %v, want the one held", got)
	}
	if got := hold(nil, l).Manifest(); got != nil {
		t.Errorf("no manifest held: Manifest() = %v", got)
	}
	two := hold(m)
	other := &snapshotv1.Manifest{Name: "default/b", Version: "w"}
	two.Add(other)
	if got := two.Manifest(); got != nil {
		t.Errorf("two manifests held: Manifest() = %v, want nil", got)
	}
}

func TestTypeName(t *testing.T) {
	for url, want := range map[string]string{
		snapshotv1.TypeRoute: "Route",
		"type.googleapis.com/envoy.service.discovery.v3.DeltaDiscoveryRequest": "DeltaDiscoveryRequest",
		"Plain": "Plain",
		"":      "",
	} {
		if got := snapshotv1.TypeName(url); got != want {
			t.Errorf("TypeName(%q) = %q, want %q", url, got, want)
		}
	}
	if got := snapshotv1.TypeURL(&snapshotv1.Route{}); got != snapshotv1.TypeRoute {
		t.Errorf("TypeURL(Route) = %q", got)
	}
}

// TestCompactManifestSize is why the compact form exists: its size does not
// grow with the number of resources, the full form's does.
func TestCompactManifestSize(t *testing.T) {
	var rs []snapshotv1.Named
	for i := range 1000 {
		rs = append(rs, &snapshotv1.Route{Name: fmt.Sprintf("ns/gw/ns/route-%d/0", i), Route: "ns/r"})
	}
	full, compact := proto.Size(manifestOf(rs...)), proto.Size(compactOf(rs...))
	if compact > 100 || full < 50*compact {
		t.Errorf("manifest of 1000 routes: full form %d bytes, compact %d bytes", full, compact)
	}
}
