package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// TestRefHashes: the blocks are 64-character pieces of the messages as the
// reference re-marshals them (role, content; other fields dropped; Go's
// HTML escaping), chained from the model's hash, at most 256.
func TestRefHashes(t *testing.T) {
	body := []byte(`{"model":"m","stream":true,"messages":[{"content":"` + strings.Repeat("a<b ", 40) + `","role":"system","name":"x"},{"role":"user","content":"hi"}]}`)
	input := `[{"role":"system","content":"` + strings.Repeat(`a\u003cb `, 40) + `"},{"role":"user","content":"hi"}]`
	var want []uint64
	d := xxhash.New()
	_, _ = d.WriteString("target")
	prev := d.Sum64()
	for i := 0; i+64 <= len(input); i += 64 {
		d.Reset()
		_, _ = d.WriteString(input[i : i+64])
		_ = binary.Write(d, binary.LittleEndian, prev)
		prev = d.Sum64()
		want = append(want, prev)
	}
	got := refHashes("target", body, 64)
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(input)/64 {
		t.Fatalf("hashes\n got %x\nwant %x", got, want)
	}
	if other := refHashes("other", body, 64); other[0] == got[0] {
		t.Fatal("the model does not seed the chain")
	}
	long := []byte(`{"model":"m","prompt":"` + strings.Repeat("x", 64*300) + `"}`)
	if n := len(refHashes("m", long, 64)); n != refMaxBlocks {
		t.Fatalf("%d blocks of a 300-block prompt, want %d", n, refMaxBlocks)
	}
	for _, b := range []string{`{"model":"m","prompt":"short"}`, `not json`, `{"model":"m"}`} {
		if h := refHashes("m", []byte(b), 64); h != nil {
			t.Errorf("%s: %d blocks", b, len(h))
		}
	}
}

func refEndpoints(n int) []*endpoints.Endpoint {
	out := make([]*endpoints.Endpoint, n)
	for i := range out {
		out[i] = endpoints.New(endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)})
		out[i].SetMetrics(&endpoints.Metrics{At: time.Now()})
	}
	return out
}

func chat(system, user string) []byte {
	return []byte(`{"model":"m","messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"` + user + `"}]}`)
}

// TestApproxPrefixPick: a prompt returns to the server that got its prefix;
// queue depth outweighs a partial prefix match; the LRU forgets beyond its
// capacity; sheddable requests to a saturated pool are refused.
func TestApproxPrefixPick(t *testing.T) {
	eps := refEndpoints(4)
	capacity := 1000
	p := newApproxIndex(64, func(string) int { return capacity })
	sys := strings.Repeat("s", 64*20)
	first, err := p.Pick(&picker.Request{Model: "m", Body: chat(sys, "one")}, eps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		got, _ := p.Pick(&picker.Request{Model: "m", Body: chat(sys, fmt.Sprint("question ", i))}, eps)
		if got != first {
			t.Fatalf("request %d under the same prefix went to %s, the prefix is on %s", i, got.Address, first.Address)
		}
	}
	// Queue: the home has the longest queue (score 0 of 2) against a full
	// match (3 × ~0.95): prefix still wins; KV full too (0 of 2) and it
	// loses to an idle server.
	first.SetMetrics(&endpoints.Metrics{Waiting: 10, KVCacheUsage: 1, At: time.Now()})
	if got, _ := p.Pick(&picker.Request{Model: "m", Body: chat(sys, "busy")}, eps); got == first {
		t.Fatal("a full, queued home kept its prefix")
	}
	// A small LRU forgets: 21 blocks per request, capacity 30.
	capacity = 30
	q := newApproxIndex(64, func(string) int { return capacity })
	one := refEndpoints(1)
	_, _ = q.Pick(&picker.Request{Model: "m", Body: chat(sys, "a")}, one)
	_, _ = q.Pick(&picker.Request{Model: "m", Body: chat(strings.Repeat("t", 64*20), "b")}, one)
	if n := len(q.servers); n > capacity {
		t.Fatalf("%d hashes indexed with capacity %d", n, capacity)
	}
	q.mu.Lock()
	q.matchLongest(refHashes("m", chat(sys, "a"), 64))
	q.mu.Unlock()
	if q.match[one[0].Address] != 0 {
		t.Fatalf("the evicted prefix still matches %d blocks", q.match[one[0].Address])
	}
	// Saturation: every server's queue at 5 refuses sheddable only.
	for _, e := range eps {
		e.SetMetrics(&endpoints.Metrics{Waiting: 5, At: time.Now()})
	}
	if _, err := p.Pick(&picker.Request{Model: "m", Priority: -1, Body: chat(sys, "x")}, eps); !errors.Is(err, picker.ErrShed) {
		t.Fatalf("sheddable at saturation: %v", err)
	}
	if _, err := p.Pick(&picker.Request{Model: "m", Body: chat(sys, "x")}, eps); err != nil {
		t.Fatalf("standard at saturation: %v", err)
	}
	if _, err := p.Pick(&picker.Request{Model: "m"}, nil); !errors.Is(err, picker.ErrNoEndpoint) {
		t.Fatalf("no candidates: %v", err)
	}
}
