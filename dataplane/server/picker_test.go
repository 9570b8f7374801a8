package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestBadPoolProfileRunsDefault: a pool profile the contract refuses (an
// unknown plugin, a queue ttl out of range) does not fail Apply — that
// would freeze every other route of the gateway — but runs the default
// profile, without a wait queue; the other pool's profile and queue apply.
func TestBadPoolProfileRunsDefault(t *testing.T) {
	be := echo(t)
	bad := backendSpec{name: "bad", pool: true, addrs: []string{addr(be)}}
	good := backendSpec{name: "good", pool: true, addrs: []string{addr(be)}}
	port := freePort(t)
	m := newManager(t)
	rs := snapshot([]uint32{port}, []*snapshotv1.Route{route("a", "/a", ref(bad, 1)), route("b", "/b", ref(good, 1))},
		[]backendSpec{bad, good})
	for _, r := range rs {
		b, ok := r.(*snapshotv1.Backend)
		if !ok {
			continue
		}
		switch b.GetName() {
		case bad.resourceName():
			b.Picker = &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "telepathy", Weight: 1}},
				Queue: &snapshotv1.WaitQueue{Ttl: durationpb.New(-time.Second)}}
		case good.resourceName():
			b.Picker = &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "queue", Weight: 1}},
				Queue: &snapshotv1.WaitQueue{}}
		}
	}
	apply(t, m, rs)
	for _, path := range []string{"/a", "/b"} {
		if err := ok200(http.Get(url(port, path))); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	checkQueuesAdmin(t, m, `"pool": "ns/good"`)
	if _, body := adminGet(t, m, "/queues"); strings.Contains(body, `"ns/bad"`) {
		t.Fatalf("the refused profile's queue is in use:\n%s", body)
	}
}
