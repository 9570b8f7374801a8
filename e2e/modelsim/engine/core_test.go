package engine

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// simRun drives a Core in pure simulated time (no sleeping): requests arrive
// at their Arrival, steps run back to back, and onStep sees the core after
// every step.
func simRun(t *testing.T, c *Core, reqs []*Request, onStep func(now time.Time)) {
	t.Helper()
	pending := append([]*Request(nil), reqs...)
	now := pending[0].Arrival
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			t.Fatal("simulation did not finish")
		}
		for len(pending) > 0 && !pending[0].Arrival.After(now) {
			if err := c.Add(pending[0]); err != nil {
				t.Fatal(err)
			}
			pending = pending[1:]
		}
		res := c.Step(now, 1)
		if res.Scheduled == 0 {
			if len(pending) == 0 {
				if !c.Idle() {
					t.Fatalf("stuck: %+v", c.Stats())
				}
				return
			}
			now = pending[0].Arrival
			continue
		}
		now = res.End
		if onStep != nil {
			onStep(now)
		}
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// text returns n characters of deterministic text unique to seed.
func text(seed string, n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s-%d ", seed, i)
	}
	return []byte(b.String()[:n])
}

func req(prompt []byte, out int, at time.Duration) *Request {
	r := NewRequest(prompt, out, "")
	r.Arrival = t0.Add(at)
	return r
}

func ttft(r *Request) time.Duration { return r.firstAt.Sub(r.Arrival) }

func TestPrefixHitLowersTTFTByCachedShare(t *testing.T) {
	c := NewCore(Config{})
	base := text("doc", 4000) // 1,000 tokens
	cold := req(base, 8, 0)
	simRun(t, c, []*Request{cold}, nil)

	cost := DefaultCost()
	fixed := cost.Overhead + cost.PrefillOverhead
	coldPrefill := ttft(cold) - fixed
	for _, share := range []float64{0.5, 0.9} {
		prompt := append(append([]byte(nil), base[:int(share*4000)]...), text(fmt.Sprint("tail", share), 4000-int(share*4000))...)
		r := req(prompt, 8, time.Hour)
		simRun(t, c, []*Request{r}, nil)
		wantCached := int(share*1000) / 16 * 16
		if r.cached != wantCached {
			t.Fatalf("share %.1f: cached %d tokens, want %d", share, r.cached, wantCached)
		}
		got := float64(ttft(r)-fixed) / float64(coldPrefill)
		want := 1 - float64(wantCached)/1000
		if math.Abs(got-want) > 0.03 {
			t.Errorf("share %.1f: prefill part of TTFT is %.3f of cold (%v vs %v), want ≈ %.3f", share, got, ttft(r), ttft(cold), want)
		}
	}
	if d := ttft(cold); d < 100*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("lone 1,000-token prompt TTFT = %v, want 100–300 ms", d)
	}
}

func TestWaitingQueueGrowsUnderOverloadAndDrains(t *testing.T) {
	c := NewCore(Config{})
	var reqs []*Request
	// ~100 req/s of 500-token prompts with 200 output tokens is far above
	// what 16 slots at ~25 ms/token can serve (~16/5 s ≈ 3 req/s).
	for i := range 100 {
		reqs = append(reqs, req(text(fmt.Sprint("q", i), 2000), 200, time.Duration(i)*10*time.Millisecond))
	}
	maxWaiting, lastWaiting := 0, -1
	drainedAfterPeak := false
	simRun(t, c, reqs, func(time.Time) {
		s := c.Stats()
		maxWaiting = max(maxWaiting, s.Waiting)
		if maxWaiting > 50 && s.Waiting < lastWaiting {
			drainedAfterPeak = true
		}
		lastWaiting = s.Waiting
		if s.Running > 16 {
			t.Fatalf("running %d > max-num-seqs", s.Running)
		}
	})
	if maxWaiting < 50 {
		t.Errorf("waiting queue peaked at %d, want it to grow past 50 under overload", maxWaiting)
	}
	if !drainedAfterPeak || !c.Idle() {
		t.Errorf("queue did not drain: %+v", c.Stats())
	}
	for _, r := range reqs {
		if !r.finished || r.generated != 200 {
			t.Fatalf("request not finished: generated %d", r.generated)
		}
	}
}

func TestKVExhaustionMakesRequestsWait(t *testing.T) {
	c := NewCore(Config{KVBlocks: 40})
	// Each needs ceil((400+20)/16) = 27 of 40 blocks: only one fits at a time.
	a := req(text("a", 1600), 20, 0)
	b := req(text("b", 1600), 20, 0)
	sawWait := false
	simRun(t, c, []*Request{a, b}, func(time.Time) {
		s := c.Stats()
		if s.Running == 1 && s.Waiting == 1 {
			sawWait = true
		}
	})
	if !sawWait {
		t.Fatal("second request never waited for KV blocks")
	}
	if b.firstAt.Before(a.lastTokenAt) {
		t.Errorf("b started (%v) before a finished (%v) despite no free blocks", b.firstAt.Sub(t0), a.lastTokenAt.Sub(t0))
	}
}

func TestKVEvictionIsLRUTailFirst(t *testing.T) {
	c := NewCore(Config{KVBlocks: 48})
	a := req(text("a", 1024), 4, 0) // 16 prompt blocks + 1 output block
	simRun(t, c, []*Request{a}, nil)
	b := req(text("b", 1024), 4, time.Minute)
	simRun(t, c, []*Request{b}, nil)
	// 21 blocks: 14 never-used ones, then 7 taken from a (older), tail first.
	big := req(text("c", 1280), 4, 2*time.Minute)
	simRun(t, c, []*Request{big}, nil)

	// b first: re-running a would itself evict b's tail blocks.
	b2 := req(text("b", 1024), 4, 3*time.Minute)
	simRun(t, c, []*Request{b2}, nil)
	a2 := req(text("a", 1024), 4, 4*time.Minute)
	simRun(t, c, []*Request{a2}, nil)
	// b2 needed two more blocks, taken from a's tail again: 8 of a's 16 remain.
	if a2.cached != 8*16 {
		t.Errorf("a re-run hit %d tokens, want 128 (head blocks survive, tail evicted first)", a2.cached)
	}
	if b2.cached != 15*16 {
		t.Errorf("b re-run hit %d tokens, want 240 (more recent, not evicted)", b2.cached)
	}
}

func TestPreemptionOfNewestWhenKVRunsOut(t *testing.T) {
	c := NewCore(Config{KVBlocks: 40})
	// Both fit at admission (≈13 blocks each) but grow to 26 blocks each.
	a := req(text("a", 800), 200, 0)
	b := req(text("b", 800), 200, 0)
	preemptions := 0
	pending := []*Request{a, b}
	for _, r := range pending {
		if err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	now := t0
	for !c.Idle() {
		res := c.Step(now, 1)
		for _, ev := range res.Events {
			if ev.Kind == EvPreempted {
				preemptions++
			}
		}
		now = res.End
	}
	if preemptions == 0 {
		t.Fatal("expected the newest request to be preempted")
	}
	if a.generated != 200 || b.generated != 200 {
		t.Fatalf("generated a=%d b=%d", a.generated, b.generated)
	}
	if !b.lastTokenAt.After(a.lastTokenAt) {
		t.Error("newest request should have been the one preempted and finish last")
	}
}

func TestLoRARequestWaitsForSlot(t *testing.T) {
	c := NewCore(Config{MaxLoRAs: 1})
	x := NewRequest(text("x", 400), 50, "a")
	y := NewRequest(text("y", 400), 50, "b")
	z := NewRequest(text("z", 400), 50, "")
	for _, r := range []*Request{x, y, z} {
		r.Arrival = t0
	}
	sawWaitingAdapter := false
	simRun(t, c, []*Request{x, y, z}, func(time.Time) {
		s := c.Stats()
		if JoinAdapters(s.WaitingAdapters) == "b" && JoinAdapters(s.RunningAdapters) == "a" {
			sawWaitingAdapter = true
		}
	})
	if !sawWaitingAdapter {
		t.Error("stats never showed b waiting while a runs")
	}
	if y.firstAt.Before(x.lastTokenAt) {
		t.Errorf("adapter b started before adapter a released the only slot")
	}
	if !z.firstAt.Before(x.lastTokenAt) {
		t.Errorf("base-model request should not wait for a LoRA slot")
	}
	// x paid the adapter load; z (same first step) did too since steps are shared.
	if ttft(x) < DefaultCost().LoRALoad {
		t.Errorf("adapter load time not charged: TTFT %v", ttft(x))
	}
}

func TestLatencyRisesWithBatchSize(t *testing.T) {
	// Median inter-token latency: steady-state decode, not the prefill steps
	// that interleave while the batch fills.
	itl := func(batch int) time.Duration {
		c := NewCore(Config{})
		for i := range batch {
			if err := c.Add(req(text(fmt.Sprint("b", i), 4000), 128, 0)); err != nil {
				t.Fatal(err)
			}
		}
		var gaps []time.Duration
		for now := t0; !c.Idle(); {
			res := c.Step(now, 1)
			for _, ev := range res.Events {
				if ev.Kind == EvToken {
					gaps = append(gaps, ev.Dur)
				}
			}
			now = res.End
		}
		slices.Sort(gaps)
		return gaps[len(gaps)/2]
	}
	b1, b8, b16 := itl(1), itl(8), itl(16)
	t.Logf("ITL batch 1 %v, 8 %v, 16 %v", b1, b8, b16)
	if !(b1 < b8 && b8 < b16) {
		t.Errorf("ITL does not rise with batch: %v %v %v", b1, b8, b16)
	}
	if b1 < 11*time.Millisecond || b1 > 13*time.Millisecond {
		t.Errorf("batch-1 ITL %v, want ≈ 12 ms", b1)
	}
	if b16 < 22*time.Millisecond || b16 > 30*time.Millisecond {
		t.Errorf("batch-16 ITL %v, want ≈ 25 ms", b16)
	}
}

func TestTooLongRejected(t *testing.T) {
	c := NewCore(Config{MaxModelLen: 100})
	if err := c.Add(req(text("x", 1000), 10, 0)); err == nil {
		t.Fatal("want TooLongError")
	}
}

// A prefill-only request (embeddings) as large as the whole KV cache must be
// rejected up front rather than wait forever for room it can never get.
func TestPrefillOnlyRequestThatCannotFitIsRejected(t *testing.T) {
	c := NewCore(Config{KVBlocks: 4, MaxModelLen: 1 << 20})
	if err := c.Add(req(text("x", 4*64), 0, 0)); err == nil {
		t.Fatal("64 tokens + 1 cannot fit in 4 blocks of 16: want TooLongError")
	}
	ok := req(text("y", 4*63), 0, 0)
	simRun(t, c, []*Request{ok}, nil)
	if !ok.finished {
		t.Fatal("63-token prefill-only request did not finish")
	}
}

// The placement ground truth: a request whose adapter sits idle in a slot
// is admitted without a load; one whose adapter is absent loads it,
// evicting the least recently used idle adapter when the slots are full.
func TestLoRAPlacementCounts(t *testing.T) {
	c := NewCore(Config{MaxLoRAs: 2})
	seq := []struct {
		adapter, evicts string
		loaded          bool
	}{
		{"a", "", true},  // empty slot
		{"b", "", true},  // second empty slot
		{"a", "", false}, // resident and idle: no load
		{"c", "b", true}, // slots full: b is least recently used
		{"a", "", false}, // still resident
		{"b", "c", true}, // back, evicting c
		{"", "", false},  // base model: not counted
	}
	var reqs []*Request
	for i, s := range seq {
		r := NewRequest(text(fmt.Sprint(i), 100), 5, s.adapter)
		r.Arrival = t0.Add(time.Duration(i) * time.Second) // one at a time
		reqs = append(reqs, r)
	}
	simRun(t, c, reqs, nil)
	for i, s := range seq {
		p := reqs[i]
		if p.adapterLoaded != s.loaded || p.adapterEvicted != s.evicts {
			t.Errorf("request %d (%q): loaded %v evicted %q, want %v %q", i, s.adapter, p.adapterLoaded, p.adapterEvicted, s.loaded, s.evicts)
		}
	}
	want := LoRACounts{Resident: 2, Loaded: 4, Evictions: 2}
	if got := c.Stats().LoRA; got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if got := JoinAdapters(c.Stats().ResidentAdapters); got != "a,b" {
		t.Errorf("resident %q, want a,b (least recently used first)", got)
	}
}
