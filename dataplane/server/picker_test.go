package server_test

import (
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestUnknownScorerRejected: a pool profile naming a plugin the proxy does
// not have fails Apply (the proxy NACKs it and keeps its config).
func TestUnknownScorerRejected(t *testing.T) {
	be := echo(t)
	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	rs := withProfile(snapshot([]uint32{port}, []*snapshotv1.Route{route("r", "/", ref(pool, 1))}, []backendSpec{pool}),
		&snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "telepathy", Weight: 1}}})
	err := m.Apply(compile(t, rs))
	if err == nil || !strings.Contains(err.Error(), "telepathy") {
		t.Fatalf("Apply with an unknown scorer: %v", err)
	}
	if m.Ready() {
		t.Fatal("a rejected config was applied")
	}
}
