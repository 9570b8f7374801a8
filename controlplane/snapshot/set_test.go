package snapshot

import (
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestNewSetVersionIsContentHash(t *testing.T) {
	mk := func(port uint32) []snapshotv1.Named {
		return []snapshotv1.Named{
			&snapshotv1.Route{Name: "ns/gw/default/r/0"},
			&snapshotv1.Listener{Name: "ns/gw/http", Port: port},
		}
	}
	a, err := NewSet("ns/gw", mk(80))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSet("ns/gw", []snapshotv1.Named{mk(80)[1], mk(80)[0]})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != b.Version {
		t.Fatalf("same content, different order: versions %s != %s", a.Version, b.Version)
	}
	c, err := NewSet("ns/gw", mk(81))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version == c.Version {
		t.Fatalf("different content, same version %s", a.Version)
	}
	m, full := a.Manifest(), a.FullManifest()
	if m.Name != "ns/gw" || m.Version != a.Version || len(m.Resources) != 0 || len(m.Types) != 2 || a.Count() != 2 {
		t.Fatalf("manifest = %v", m)
	}
	if full.Name != m.Name || full.Version != m.Version || len(full.Resources) != 2 || len(full.Types) != 0 {
		t.Fatalf("full manifest = %v", full)
	}
	if full.Resources[0].TypeUrl != snapshotv1.TypeListener || full.Resources[0].Hash != snapshotv1.Hash(mk(80)[1]) {
		t.Fatalf("manifest refs not sorted by type or hash wrong: %v", full.Resources)
	}
	// Both forms describe the set: a proxy holding it is complete with either.
	for _, mf := range []*snapshotv1.Manifest{m, full} {
		held := snapshotv1.Resources{}
		held.Add(mf)
		for _, r := range mk(80) {
			held.Add(r)
		}
		if _, err := held.Check(); err != nil {
			t.Errorf("set held with manifest %v: %v", mf, err)
		}
	}
	if n := a.WithProxyCount(3); n.Manifest().ProxyCount != 3 || n.FullManifest().ProxyCount != 3 || n.Count() != 2 {
		t.Errorf("WithProxyCount(3): manifests %v / %v", n.Manifest(), n.FullManifest())
	}
}

func TestNewSetRejectsAmbiguity(t *testing.T) {
	if _, err := NewSet("ns/gw", []snapshotv1.Named{&snapshotv1.Route{}}); err == nil {
		t.Fatal("want error for nameless resource")
	}
	dup := []snapshotv1.Named{&snapshotv1.Route{Name: "x"}, &snapshotv1.Route{Name: "x"}}
	if _, err := NewSet("ns/gw", dup); err == nil {
		t.Fatal("want error for duplicate name")
	}
}

// TestWithProxyCount: the count rides in the Manifest alone; the version,
// every other resource and the original set stay as they were.
func TestWithProxyCount(t *testing.T) {
	a, err := NewSet("ns/gw", []snapshotv1.Named{&snapshotv1.Route{Name: "ns/gw/default/r/0"}})
	if err != nil {
		t.Fatal(err)
	}
	b := a.WithProxyCount(16)
	if b.Version != a.Version || b.Manifest().GetVersion() != a.Version {
		t.Errorf("count changed the version: %s → %s", a.Version, b.Version)
	}
	if b.ProxyCount() != 16 || a.ProxyCount() != 0 {
		t.Errorf("counts: new %d (want 16), original %d (want 0, untouched)", b.ProxyCount(), a.ProxyCount())
	}
	if b.Resources[snapshotv1.TypeRoute][0] != a.Resources[snapshotv1.TypeRoute][0] {
		t.Error("routes not shared")
	}
	if snapshotv1.Hash(b.Manifest()) == snapshotv1.Hash(a.Manifest()) {
		t.Error("the Manifest's content did not change, so it would not be re-sent")
	}
	if a.WithProxyCount(0) != a {
		t.Error("an unchanged count should return the set itself")
	}
}

// TestNewSetFromReusesHashes: a resource the previous set holds (the same
// message) is not hashed again; a new message is. Sets' messages are
// immutable, so a reused hash is the right one: the test breaks that rule on
// purpose to tell the reuse apart from a fresh hash.
func TestNewSetFromReusesHashes(t *testing.T) {
	l := &snapshotv1.Listener{Name: "ns/gw/l", Gateway: "ns/gw", Port: 80}
	r := &snapshotv1.Route{Name: "ns/gw/ns/r/0", Route: "ns/r"}
	prev, err := NewSet("ns/gw", []snapshotv1.Named{l, r})
	if err != nil {
		t.Fatal(err)
	}
	same, err := NewSetFrom(prev, "ns/gw", []snapshotv1.Named{l, r})
	if err != nil {
		t.Fatal(err)
	}
	if same.Version != prev.Version {
		t.Fatalf("same resources: version %s, want %s", same.Version, prev.Version)
	}
	r.RuleIndex = 7 // not allowed: shows the hash is taken from prev
	r2 := &snapshotv1.Route{Name: "ns/gw/ns/r2/0", Route: "ns/r2"}
	next, err := NewSetFrom(prev, "ns/gw", []snapshotv1.Named{l, r, r2})
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	for _, ref := range next.Refs() {
		hashes[ref.Name] = ref.Hash
	}
	if hashes[r.Name] == snapshotv1.Hash(r) {
		t.Error("the reused message was hashed again")
	}
	if hashes[r2.Name] != snapshotv1.Hash(r2) || hashes[l.Name] != snapshotv1.Hash(l) {
		t.Errorf("hashes %v", hashes)
	}
}
