package provision

import (
	"slices"
	"testing"

	"github.com/infergate/infergate/controlplane/translate"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestListenerPortsUpdate(t *testing.T) {
	out := func(ports map[string][]uint32) *translate.Output {
		o := &translate.Output{Gateways: map[string]*translate.GatewayResources{}}
		for gw, ps := range ports {
			res := &translate.GatewayResources{Gateway: gw}
			for _, p := range ps {
				res.Listeners = append(res.Listeners, &snapshotv1.Listener{Port: p})
			}
			o.Gateways[gw] = res
		}
		return o
	}
	lp := NewListenerPorts()
	var changed []string
	lp.notify(func(gw string) { changed = append(changed, gw) })

	lp.Update(out(map[string][]uint32{"ns/a": {8443, 80, 80}, "ns/b": {80}}))
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"ns/a", "ns/b"}) {
		t.Fatalf("first update changed %v, want both gateways", changed)
	}
	if got := lp.Get("ns/a"); !slices.Equal(got, []int32{80, 8443}) {
		t.Fatalf("ports of ns/a = %v, want [80 8443]", got)
	}

	changed = nil
	lp.Update(out(map[string][]uint32{"ns/a": {80, 8443}, "ns/b": {80, 9000}}))
	if !slices.Equal(changed, []string{"ns/b"}) {
		t.Fatalf("second update changed %v, want only ns/b", changed)
	}

	lp.notify(nil)
	lp.Update(out(nil))
	if got := lp.Get("ns/b"); got != nil {
		t.Fatalf("ports of a gone gateway = %v, want none", got)
	}
}
