package picker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// What the cost model expects an endpoint to still hold of a prompt sent
// there, as the endpoint's cache fills with other work and as its
// responses confirm or refute the expected hits.

// unrelated is the i-th of distinct prompts of ~500 tokens.
func unrelated(i int) []byte {
	return chatBody(fmt.Sprintf("unrelated prompt %d ", i)+strings.Repeat("x", 2000), "hi")
}

// A send is certainly cached while less than the free part of the
// endpoint's KV cache was written there after it, then expected less and
// less, and not at all once a whole cache was written.
func TestCostOlderSendIsExpectedLess(t *testing.T) {
	f := newCostFleet(t, 1)
	f.state[0].KVCacheUsage = 0.5 // 16k of 32k tokens free
	f.scrape()
	p := chatBody(longSystem, "the question")
	f.pick(p)
	cached := func() float64 { return f.explain(p).Candidates[0].CachedTokens }
	full := cached()
	if full == 0 {
		t.Fatal("the prefix just sent is not expected cached")
	}
	// Each unrelated pick writes ~750 tokens (prompt and expected output).
	for i := range 12 { // ~9k: within the free part
		f.pick(unrelated(i))
	}
	if c := cached(); c != full {
		t.Fatalf("after ~9k tokens written into 16k free: expected %v tokens, want all %v", c, full)
	}
	for i := range 16 { // ~21k in all: past the free part, short of the cache
		f.pick(unrelated(100 + i))
	}
	mid := cached()
	if !(mid > 0 && mid < full) {
		t.Fatalf("after ~21k tokens written into a 32k cache with 16k free: expected %v tokens, want between 0 and %v", mid, full)
	}
	for i := range 8 { // ~27k
		f.pick(unrelated(200 + i))
	}
	if c := cached(); !(c < mid) {
		t.Fatalf("after ~27k tokens: expected %v tokens, want less than the %v after ~21k", c, mid)
	}
	for i := range 16 { // ~39k: more than the cache
		f.pick(unrelated(300 + i))
	}
	if c := cached(); c != 0 {
		t.Fatalf("after more than a whole cache was written: still expected %v tokens", c)
	}
}

// respond reports a finished response to the scheduler, its usage saying
// the endpoint had cached the given share of the prompt.
func (f *costFleet) respond(req *picker.Request, ep *endpoints.Endpoint, share float64) {
	const promptTokens = 1100
	f.s.Observe(req, ep, picker.Outcome{UsageKnown: true, Prompt: promptTokens, Output: 50,
		CachedKnown: true, Cached: int64(share * promptTokens)})
}

// An endpoint whose responses report none of the hits the picker expected
// (a server that caches no prefixes, or evicts far sooner than estimated)
// stops being expected to hold what was sent there, so its supposed hits
// no longer draw requests; one whose responses confirm them keeps them.
func TestCostUnconfirmedHitsLoseTheirPull(t *testing.T) {
	p := chatBody(longSystem, "the question")
	for _, tc := range []struct {
		name  string
		share float64
		keep  bool
	}{{"confirmed", 1, true}, {"never cached", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCostFleet(t, 1)
			full := 0.0
			for i := range 40 {
				req, ep := f.pickReq(p)
				if i == 0 {
					full = f.explain(p).Candidates[0].CachedTokens
				}
				f.respond(req, ep, tc.share)
			}
			c := f.explain(p).Candidates[0].CachedTokens
			switch {
			case full == 0:
				t.Fatal("the prefix just sent is not expected cached")
			case tc.keep && c < 0.9*full:
				t.Fatalf("hits confirmed 40 times: expected %v of %v tokens", c, full)
			case !tc.keep && c > 0.2*full:
				t.Fatalf("40 responses with no cached tokens: still expected %v of %v tokens", c, full)
			}
		})
	}
}

// A response that reports less cached than expected (the endpoint had
// evicted the prompt) does not make the proxy forget the prompt there: the
// request's own prefill wrote it again, so the next request with it still
// expects nearly all of it.
func TestCostEvictedHitIsCachedAgain(t *testing.T) {
	f := newCostFleet(t, 2)
	p := chatBody(longSystem, "the question")
	req, ep := f.pickReq(p)
	f.respond(req, ep, 0)
	d := f.explain(p)
	for _, c := range d.Candidates {
		if c.Endpoint != ep.Address {
			continue
		}
		if c.CachedTokens < 0.9*d.PromptTokens {
			t.Fatalf("after one response that found the prompt evicted: %v of %v tokens expected where it was just prefilled", c.CachedTokens, d.PromptTokens)
		}
		if d.Chosen != ep.Address {
			t.Fatalf("the prompt goes to %s, not back to %s where it was just prefilled", d.Chosen, ep.Address)
		}
	}
}
