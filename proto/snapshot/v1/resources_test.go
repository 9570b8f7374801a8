package snapshotv1_test

import (
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

type Resources = snapshotv1.Resources

func manifestOf(rs ...snapshotv1.Named) *snapshotv1.Manifest {
	m := &snapshotv1.Manifest{Name: "default/a", Version: "v"}
	for _, r := range rs {
		m.Resources = append(m.Resources, &snapshotv1.ResourceRef{TypeUrl: snapshotv1.TypeURL(r), Name: r.GetName(), Hash: snapshotv1.Hash(r)})
	}
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
	extra := &snapshotv1.Backend{Name: "default/a/service/default/x:80"}
	m := manifestOf(l, r)

	cases := []struct {
		name string
		res  Resources
		want bool
	}{
		{"all present", hold(m, l, r), true},
		{"no manifest", hold(nil, l, r), false},
		{"missing resource", hold(m, l), false},
		{"stale content", hold(m, l, r2), false},
		{"extra resource", hold(m, l, r, extra), false},
		{"empty", Resources{}, false},
		{"empty manifest, nothing held", hold(manifestOf()), true},
	}
	for _, tc := range cases {
		got, ok := tc.res.Complete()
		if ok != tc.want {
			t.Errorf("%s: Complete() = %v, want %v", tc.name, ok, tc.want)
		}
		if tc.res[snapshotv1.TypeManifest] != nil && got == nil {
			t.Errorf("%s: manifest not returned", tc.name)
		}
	}
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
