package fleetv1

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// onTheWire returns p marshalled and unmarshalled.
func onTheWire(t *testing.T, p *PoolSends) *PoolSends {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q := &PoolSends{}
	if err := proto.Unmarshal(b, q); err != nil {
		t.Fatal(err)
	}
	return q
}

// Add and All round-trip sends through the columns, on the wire too.
func TestPoolSendsRoundTrip(t *testing.T) {
	in := []Sent{
		{Endpoint: 10, Keys: []uint64{1, 2, 3}, Prefill: 900, Output: 120, Age: 12 * time.Millisecond},
		{Endpoint: 11, Keys: []uint64{}},
		{Endpoint: 12, Keys: []uint64{4}, Prefill: MaxPrefillTokens + 5, Output: MaxOutputTokens + 1, Age: time.Hour},
	}
	// Add caps what the columns can carry.
	want := slices.Clone(in)
	want[2].Prefill, want[2].Output, want[2].Age = MaxPrefillTokens, MaxOutputTokens, MaxSendAge
	p := &PoolSends{Pool: "p"}
	for _, s := range in {
		p.Add(s)
	}
	q := onTheWire(t, p)
	if err := q.Check(); err != nil {
		t.Fatal(err)
	}
	i := 0
	for s := range q.All() {
		w := want[i]
		if s.Endpoint != w.Endpoint || !slices.Equal(s.Keys, w.Keys) || s.Prefill != w.Prefill || s.Output != w.Output || s.Age != w.Age {
			t.Fatalf("send %d: %+v, want %+v", i, s, w)
		}
		i++
	}
	if i != len(in) || q.Len() != len(in) {
		t.Fatalf("%d sends (Len %d), want %d", i, q.Len(), len(in))
	}
}

// A PoolSends without the prefill, output and age columns (an older
// proxy's) reads as sends of no prefill, no output and no age; a column of the wrong length or a
// value beyond its bound fails Check.
func TestPoolSendsOptionalColumns(t *testing.T) {
	old := &PoolSends{Pool: "p", Endpoints: []uint64{1, 2}, KeyCounts: []uint32{1, 1}, Keys: []uint64{5, 6}}
	for s := range old.All() {
		if s.Prefill != 0 || s.Output != 0 || s.Age != 0 {
			t.Fatalf("old sends read as %+v", s)
		}
	}
	for name, m := range map[string]*PoolSends{
		"short prefill": {Pool: "p", Endpoints: []uint64{1, 2}, KeyCounts: []uint32{1, 1}, Keys: []uint64{5, 6}, PrefillTokens: []uint32{3}},
		"long ages":     {Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{5}, AgeMs: []uint32{1, 2}},
		"huge prefill":  {Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{5}, PrefillTokens: []uint32{MaxPrefillTokens + 1}},
		"short output":  {Pool: "p", Endpoints: []uint64{1, 2}, KeyCounts: []uint32{1, 1}, Keys: []uint64{5, 6}, OutputTokens: []uint32{3}},
		"huge output":   {Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{5}, OutputTokens: []uint32{MaxOutputTokens + 1}},
		"ancient":       {Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{5}, AgeMs: []uint32{uint32(MaxSendAge/time.Millisecond) + 1}},
	} {
		if m.Check() == nil {
			t.Errorf("%s: Check passed", name)
		}
	}
}

// AddPrefilled and AllPrefilled round-trip prefilled records through
// their columns beside sends; columns of unequal length or values beyond
// their bounds fail Check, and a message without them (an older proxy's)
// has none.
func TestPoolSendsPrefilled(t *testing.T) {
	p := &PoolSends{Pool: "p"}
	p.Add(Sent{Endpoint: 10, Keys: []uint64{1}})
	in := []Prefilled{{Endpoint: 10, Tokens: 2048, Age: 30 * time.Millisecond}, {Endpoint: 11, Tokens: MaxPrefillTokens + 1, Age: -time.Second}}
	for _, d := range in {
		p.AddPrefilled(d)
	}
	q := onTheWire(t, p)
	want := []Prefilled{in[0], {Endpoint: 11, Tokens: MaxPrefillTokens}}
	got := slices.Collect(q.AllPrefilled())
	if !slices.Equal(got, want) || q.Len() != 1 || q.PrefilledLen() != 2 {
		t.Fatalf("prefilled %+v (Len %d), want %+v beside 1 send", got, q.Len(), want)
	}
	old := &PoolSends{Pool: "p", Endpoints: []uint64{1}, KeyCounts: []uint32{1}, Keys: []uint64{5}}
	if old.Check() != nil || old.PrefilledLen() != 0 {
		t.Fatal("a message without prefilled columns is not one without prefilled records")
	}
	for name, m := range map[string]*PoolSends{
		"no tokens": {Pool: "p", PrefilledEndpoints: []uint64{1}, PrefilledAgeMs: []uint32{1}},
		"no ages":   {Pool: "p", PrefilledEndpoints: []uint64{1}, PrefilledTokens: []uint32{1}},
		"orphans":   {Pool: "p", PrefilledTokens: []uint32{1}, PrefilledAgeMs: []uint32{1}},
		"huge":      {Pool: "p", PrefilledEndpoints: []uint64{1}, PrefilledTokens: []uint32{MaxPrefillTokens + 1}, PrefilledAgeMs: []uint32{1}},
		"ancient":   {Pool: "p", PrefilledEndpoints: []uint64{1}, PrefilledTokens: []uint32{1}, PrefilledAgeMs: []uint32{uint32(MaxSendAge/time.Millisecond) + 1}},
	} {
		if m.Check() == nil {
			t.Errorf("%s: Check passed", name)
		}
		if n := len(slices.Collect(m.AllPrefilled())); n != 0 {
			t.Errorf("%s: AllPrefilled yielded %d records of columns that fail Check", name, n)
		}
	}
}

// FuzzPoolSends decodes arbitrary bytes as a PoolSends: All yields
// exactly Len sends whose keys are the message's keys in order, and
// AllPrefilled PrefilledLen records within bounds, when Check passes, and
// nothing otherwise; appending to a yielded window never
// writes into the next send's keys.
func FuzzPoolSends(f *testing.F) {
	good := &PoolSends{Pool: "p"}
	good.Add(Sent{Endpoint: 1, Keys: []uint64{1, 2}, Prefill: 7, Output: 3, Age: time.Second})
	good.Add(Sent{Endpoint: 2, Keys: []uint64{3}})
	good.AddPrefilled(Prefilled{Endpoint: 2, Tokens: 900, Age: time.Millisecond})
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
		for snd := range p.All() {
			got = append(got, snd.Keys...)
			_ = append(snd.Keys, 0xdead) // must not reach the next window
			if snd.Prefill > MaxPrefillTokens || snd.Output > MaxOutputTokens || snd.Age < 0 || snd.Age > MaxSendAge {
				t.Fatalf("yielded %+v beyond the bounds", snd)
			}
			n++
		}
		d := 0
		for rec := range p.AllPrefilled() {
			if rec.Tokens > MaxPrefillTokens || rec.Age < 0 || rec.Age > MaxSendAge {
				t.Fatalf("yielded %+v beyond the bounds", rec)
			}
			d++
		}
		if p.Check() != nil {
			if n != 0 || d != 0 {
				t.Fatalf("All yielded %d sends and AllPrefilled %d records of columns that fail Check", n, d)
			}
			return
		}
		if d != p.PrefilledLen() {
			t.Fatalf("AllPrefilled yielded %d records, want %d", d, p.PrefilledLen())
		}
		if n != p.Len() || !slices.Equal(got, want) {
			t.Fatalf("All yielded %d sends with keys %v; want %d with %v", n, got, p.Len(), want)
		}
	})
}
