package fleetv1

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
)

// Add and All round-trip sends through the columns, on the wire too.
func TestPoolSendsRoundTrip(t *testing.T) {
	in := [][]uint64{{1, 2, 3}, {}, {4}}
	p := &PoolSends{Pool: "p"}
	for i, keys := range in {
		p.Add(uint64(10+i), keys)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q PoolSends
	if err := proto.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if err := q.Check(); err != nil {
		t.Fatal(err)
	}
	i := 0
	for ep, keys := range q.All() {
		if ep != uint64(10+i) || !slices.Equal(keys, in[i]) {
			t.Fatalf("send %d: %d %v, want %d %v", i, ep, keys, 10+i, in[i])
		}
		i++
	}
	if i != len(in) || q.Len() != len(in) {
		t.Fatalf("%d sends (Len %d), want %d", i, q.Len(), len(in))
	}
}

// FuzzPoolSends decodes arbitrary bytes as a PoolSends: All yields
// exactly Len sends whose keys are the message's keys in order when Check
// passes, and nothing otherwise; appending to a yielded window never
// writes into the next send's keys.
func FuzzPoolSends(f *testing.F) {
	good := &PoolSends{Pool: "p"}
	good.Add(1, []uint64{1, 2})
	good.Add(2, []uint64{3})
	bad := &PoolSends{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{5}, Keys: []uint64{1}}
	for _, m := range []*PoolSends{good, bad, {}} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p PoolSends
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		want := slices.Clone(p.GetKeys())
		var got []uint64
		n := 0
		for _, keys := range p.All() {
			got = append(got, keys...)
			_ = append(keys, 0xdead) // must not reach the next window
			n++
		}
		if p.Check() != nil {
			if n != 0 {
				t.Fatalf("All yielded %d sends of columns that fail Check", n)
			}
			return
		}
		if n != p.Len() || !slices.Equal(got, want) {
			t.Fatalf("All yielded %d sends with keys %v; want %d with %v", n, got, p.Len(), want)
		}
	})
}
