package picker

import (
	"testing"
	"time"
)

// When the plan drops the least recently used hot keys, it is due again
// when the oldest key it kept expires, not one it dropped.
func TestPrefixHomesDueAfterTrim(t *testing.T) {
	p := NewPrefixScorer(0)
	base := time.Unix(1000, 0).UnixNano()
	var h prefixHomes
	h.hot, h.once = map[uint64]int64{}, map[uint64]int64{}
	n := maxHotPrefixes + 10
	for i := range n {
		h.hot[uint64(i+1)] = base + int64(i) // key i+1 used at base+i
	}
	h.build(nil, base+int64(n), p.planParams(), 1)
	if len(h.hot) != maxHotPrefixes {
		t.Fatalf("%d hot keys after build, want %d", len(h.hot), maxHotPrefixes)
	}
	oldestKept := base + int64(n-maxHotPrefixes)
	if want := oldestKept + int64(p.Window); h.due != want {
		t.Errorf("due %d, want %d (oldest kept use + Window)", h.due, want)
	}
}
