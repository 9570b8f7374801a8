package main

import (
	"os"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
)

// The lag is matched by a send's deepest chain key: every prompt must end
// its chain on a key of its own, and a merged send must find its pick.
func TestPromptsEndOnTheirOwnKey(t *testing.T) {
	book := newLagBook()
	w := &world{cfg: config{gateways: 2, podsPerPool: 20}}
	gw, pool, addrs := w.fleetTarget(0)
	if gw != "gw-00/gw" || len(addrs) != 20 || pool == "" {
		t.Fatalf("target: %s %s %v", gw, pool, addrs)
	}
	p, err := newFleetProxy(pool, addrs, book)
	if err != nil {
		t.Fatal(err)
	}
	pr := newPrompts(4000)
	for i := range 64 {
		if _, err := p.sched.Pick(&picker.Request{Model: "m", Body: pr.body(i)}, p.eps); err != nil {
			t.Fatal(err)
		}
	}
	sends, _ := p.fleet.SendsSince(0, nil)
	if len(sends) != 64 {
		t.Fatalf("%d sends, want 64", len(sends))
	}
	last := map[uint64]bool{}
	for _, s := range sends {
		last[s.Keys[len(s.Keys)-1]] = true
	}
	if len(last) != 64 {
		t.Fatalf("%d distinct deepest keys over 64 prompts", len(last))
	}
	_, sent, keys := book.take()
	if sent != 64 || keys < 10*64 {
		t.Fatalf("book: %d sends, %d keys", sent, keys)
	}
	book.reported(sends)
	book.mergedAt(sends[:1], sends[0].At+int64(3*time.Millisecond))
	if lags, _, _ := book.take(); len(lags) != 1 || lags[0] != 3*time.Millisecond {
		t.Fatalf("lags %v, want [3ms]", lags)
	}
}

func TestCPUSeconds(t *testing.T) {
	if _, err := cpuSeconds(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if busy, total := machineCPU(); total <= 0 || busy > total {
		t.Fatalf("machine CPU busy %v of %v", busy, total)
	}
}
