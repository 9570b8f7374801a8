package picker_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// The cost model's behaviours, on endpoints whose metrics the tests set,
// in virtual time. Numbers are not asserted, only which way decisions go.

// costFleet is n idle endpoints with fresh metrics (32k-token KV caches)
// and a cost-model scheduler on a clock the test moves.
type costFleet struct {
	t     *testing.T
	es    []*endpoints.Endpoint
	s     *picker.Scheduler
	now   time.Time
	state []endpoints.Metrics
}

func newCostFleet(t *testing.T, n int) *costFleet {
	f := &costFleet{t: t, es: eps(n), now: time.Unix(1_000_000, 0), state: make([]endpoints.Metrics, n)}
	s, err := picker.FromProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetClock(func() time.Time { return f.now })
	f.s = s
	f.scrape()
	return f
}

// scrape publishes the endpoints' metrics as of now.
func (f *costFleet) scrape() {
	for i, e := range f.es {
		m := f.state[i]
		m.KVCapacity, m.At = 32768, f.now
		e.SetMetrics(&m)
	}
}

// pick picks for body and lets the request finish at once (so only the
// test's metrics say what is busy); it returns the endpoint's index.
func (f *costFleet) pick(body []byte) int {
	f.t.Helper()
	_, ep := f.pickReq(body)
	for i, e := range f.es {
		if e == ep {
			return i
		}
	}
	return -1
}

// pickReq is pick returning the request (which carries what the pick
// expected) and the endpoint.
func (f *costFleet) pickReq(body []byte) (*picker.Request, *endpoints.Endpoint) {
	f.t.Helper()
	req := &picker.Request{Model: "m", Body: body}
	ep, err := f.s.Pick(req, f.es)
	if err != nil {
		f.t.Fatal(err)
	}
	ep.Acquire(f.now)
	ep.Release()
	return req, ep
}

// advance moves the clock and scrapes (the backlog of earlier sends
// drains meanwhile).
func (f *costFleet) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.scrape()
}

func (f *costFleet) explain(body []byte) *picker.Decision {
	f.t.Helper()
	d, err := f.s.Explain(&picker.Request{Model: "m", Body: body}, f.es)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func homesOf(d *picker.Decision) int {
	n := 0
	for _, c := range d.Candidates {
		if c.Home {
			n++
		}
	}
	return n
}

var longSystem = strings.Repeat("You answer questions about the handbook. ", 100) // ~1k tokens

// A prefix that brings a large share of the traffic gets several homes;
// once it cools (others' traffic only), its home set shrinks again.
func TestCostHotPrefixGrowsAndShrinksHomes(t *testing.T) {
	f := newCostFleet(t, 8)
	hot := func(i int) []byte { return chatBody(longSystem, fmt.Sprintf("question %d", i)) }
	other := func(i int) []byte { return chatBody(fmt.Sprintf("tenant %d ", i)+longSystem, "hi") }
	for i := range 80 {
		f.pick(hot(i))
		f.pick(other(i % 40)) // 40 other prefixes, each hot too
		f.advance(50 * time.Millisecond)
	}
	f.advance(2 * time.Second) // the plan is rebuilt every second
	f.pick(other(0))
	grown := homesOf(f.explain(hot(1000)))
	if grown < 3 {
		t.Fatalf("a prefix with half the traffic has %d homes on 8 endpoints, want several", grown)
	}
	for i := range 400 {
		f.pick(other(i % 40))
		f.advance(150 * time.Millisecond)
	}
	shrunk := homesOf(f.explain(hot(1001)))
	if shrunk >= grown {
		t.Fatalf("after cooling the prefix has %d homes, had %d", shrunk, grown)
	}
	t.Logf("homes: %d hot, %d cooled", grown, shrunk)
}

// A conversation's next turn goes where its history is cached, even when
// another endpoint runs a little less.
func TestCostConversationSticks(t *testing.T) {
	f := newCostFleet(t, 4)
	conv := func(turns ...string) []byte {
		msgs := fmt.Sprintf(`{"role":"system","content":%q}`, longSystem)
		for i, c := range turns {
			role := "user"
			if i%2 == 1 {
				role = "assistant"
			}
			msgs += fmt.Sprintf(`,{"role":%q,"content":%q}`, role, c)
		}
		return []byte(`{"model":"m","stream":true,"messages":[` + msgs + `]}`)
	}
	q1, a1 := "my first question about page 12, in some detail please", strings.Repeat("an answer ", 120)
	turn1 := conv(q1)
	first := f.pick(turn1)
	for i := range f.state {
		f.state[i].Running = 3
	}
	f.state[first].Running = 4 // one more running where the history is
	f.advance(2 * time.Second)
	turn2 := conv(q1, a1, "and page 13?")
	if got := f.pick(turn2); got != first {
		d := f.explain(turn2)
		t.Fatalf("turn 2 went to %d, its history is on %d: %+v", got, first, d.Candidates)
	}
}

// A replica that serves slower (its queue drains slower, so requests wait
// there) gets less of the traffic.
func TestCostSlowReplicaGetsLess(t *testing.T) {
	f := newCostFleet(t, 4)
	counts := make([]int, 4)
	for i := range 200 {
		// Replica 0 keeps a queue: it is slower than the others.
		f.state[0].Waiting, f.state[0].Running = 3, 8
		for j := 1; j < 4; j++ {
			f.state[j].Waiting, f.state[j].Running = 0, 6
		}
		f.advance(100 * time.Millisecond)
		counts[f.pick(chatBody(fmt.Sprintf("unique %d ", i)+longSystem, "q"))]++
	}
	for j := 1; j < 4; j++ {
		if counts[0] >= counts[j] {
			t.Fatalf("slow replica got %d requests, replica %d %d: %v", counts[0], j, counts[j], counts)
		}
	}
}

// Proxies given the same inputs — the same scrapes and each other's sends
// through the fleet exchange — pick the same endpoints: a new prefix goes
// to the same place from both, and a prefix one sent is followed by the
// other.
func TestCostProxiesAgree(t *testing.T) {
	a, b := newCostFleet(t, 8), newCostFleet(t, 8)
	b.es = a.es // the same endpoints, as every proxy resolves the same pods
	for i := range 20 {
		body := chatBody(fmt.Sprintf("new prefix %d ", i)+longSystem, "q")
		if pa, pb := a.explain(body).Chosen, b.explain(body).Chosen; pa != pb {
			t.Fatalf("new prefix %d: proxy a picks %s, b %s", i, pa, pb)
		}
	}
	// a sends prefixes; b learns where through the fleet exchange.
	var sent []int
	for i := range 8 {
		sent = append(sent, a.pick(chatBody(fmt.Sprintf("team %d ", i)+longSystem, "q")))
	}
	sends, _ := a.s.Fleet().SendsSince(0, nil)
	b.s.Fleet().MergeSends(sends)
	for i := range 8 {
		body := chatBody(fmt.Sprintf("team %d ", i)+longSystem, "another question")
		d := b.explain(body)
		if d.Chosen != a.es[sent[i]].Address {
			t.Fatalf("prefix %d: a sent it to %s, b picks %s", i, a.es[sent[i]].Address, d.Chosen)
		}
	}
}

// Explain names every candidate with its terms and changes nothing: the
// same request explained twice gets the same answer, and a pick after it
// is not steered by it.
func TestCostExplain(t *testing.T) {
	f := newCostFleet(t, 3)
	body := chatBody(longSystem, "q")
	d1, d2 := f.explain(body), f.explain(body)
	if len(d1.Candidates) != 3 || d1.Chosen == "" || d1.Chosen != d2.Chosen || d1.PromptTokens <= 0 {
		t.Fatalf("explain: %+v / %+v", d1, d2)
	}
	for _, c := range d1.Candidates {
		if c.Cost <= 0 || c.CachedTokens != 0 {
			t.Fatalf("candidate %s: %+v (nothing sent yet, nothing cached)", c.Endpoint, c.Terms)
		}
	}
	f.pick(body)
	d3 := f.explain(body)
	cached := 0
	for _, c := range d3.Candidates {
		if c.CachedTokens > 0 {
			cached++
		}
	}
	if cached != 1 {
		t.Fatalf("after one send, %d candidates believed to hold the prompt", cached)
	}
}

// An endpoint whose metrics cannot be used stays in rotation on the
// proxy's own counts instead of dropping out: under load it takes about
// its share.
func TestCostStaleEndpointStaysInRotation(t *testing.T) {
	f := newCostFleet(t, 4)
	counts := make([]int, 4)
	type open struct {
		ep  *endpoints.Endpoint
		end time.Time
	}
	var inflight []open
	for i := range 600 {
		f.now = f.now.Add(25 * time.Millisecond)
		// Requests last 2 s; the fresh endpoints report what runs there.
		kept := inflight[:0]
		for _, o := range inflight {
			if o.end.After(f.now) {
				kept = append(kept, o)
			} else {
				o.ep.Release()
			}
		}
		inflight = kept
		for j, e := range f.es {
			f.state[j].Running = float64(e.InFlight())
		}
		f.scrape()
		f.es[0].SetMetrics(&endpoints.Metrics{At: f.now.Add(-time.Hour)}) // never fresh
		req := &picker.Request{Model: "m", Body: chatBody(fmt.Sprintf("u%d", i), "q")}
		ep, err := f.s.Pick(req, f.es)
		if err != nil {
			t.Fatal(err)
		}
		ep.Acquire(f.now)
		inflight = append(inflight, open{ep, f.now.Add(2 * time.Second)})
		for j, e := range f.es {
			if e == ep {
				counts[j]++
			}
		}
	}
	if counts[0] < 600/4/2 {
		t.Fatalf("endpoint without usable metrics got %d of 600: %v", counts[0], counts)
	}
	t.Logf("requests per endpoint (0 has no usable metrics): %v", counts)
}

// sentToBusyReplica sends a long prompt to the one endpoint of a fleet
// whose KV cache (32k tokens) is 95 % in use; cached says how much of the
// prompt the picker believes is still cached there.
func sentToBusyReplica(t *testing.T) (*costFleet, func() float64) {
	t.Helper()
	f := newCostFleet(t, 1)
	f.s.SetEndpoints(f.es)
	f.state[0].KVCacheUsage = 0.95
	f.scrape()
	p := chatBody(longSystem, "the question")
	f.pick(p)
	cached := func() float64 { return f.explain(p).Candidates[0].CachedTokens }
	if cached() == 0 {
		t.Fatal("the prefix just sent is not believed cached")
	}
	return f, cached
}

// A prefix sent to a replica whose KV cache is nearly all in use stays
// believed cached while less than a whole cache was written there after
// it (its blocks are in use while its request runs, and evicted from the
// free part only after that), and is forgotten once more was written
// (in between it counts less and less: TestCostOlderSendIsExpectedLess).
func TestCostBusyReplicaKeepsItsPrefix(t *testing.T) {
	f, cached := sentToBusyReplica(t)
	other := func(i int) []byte {
		return chatBody(fmt.Sprintf("unrelated prompt %d ", i)+strings.Repeat("x", 2000), "hi")
	}
	// ~8k tokens written (prompts and expected outputs): far more than
	// the free 5 % (1.6k tokens), far less than the cache (32k).
	for i := range 10 {
		f.pick(other(i))
	}
	if c := cached(); c == 0 {
		t.Fatalf("forgotten after ~8k tokens written to a 32k-token cache that is 95 %% in use")
	}
	for i := range 60 { // ~45k tokens more: a whole cache and then some
		f.pick(other(100 + i))
	}
	if c := cached(); c != 0 {
		t.Fatalf("still believed cached (%v tokens) after more than a whole cache was written", c)
	}
}

// A long prompt another proxy just sent to an endpoint queues ahead of
// anything sent there next, though no scrape shows it yet: once the fleet
// exchange brings that send, this proxy sends its own requests elsewhere
// until the endpoint has had time to prefill it.
func TestCostOtherProxysPrefillQueues(t *testing.T) {
	a, b := newCostFleet(t, 4), newCostFleet(t, 4) // two proxies, each its own endpoint state
	b.s.SetEndpoints(b.es)
	long := chatBody("", "document: "+strings.Repeat("lorem ipsum dolor sit amet ", 1500)) // ~10k tokens
	x := a.pick(long)
	// Distinct within the first block (64 bytes of the prompt), so that
	// ties between the idle endpoints spread the picks over all of them.
	short := func(i int) []byte { return chatBody(fmt.Sprintf("q%d", i), "unrelated question") }
	hits := func() int {
		n := 0
		for i := range 40 {
			if b.explain(short(i)).Chosen == b.es[x].Address {
				n++
			}
		}
		return n
	}
	if n := hits(); n == 0 {
		t.Fatalf("before the exchange: endpoint %d got none of 40 picks; want its share (the test cannot tell otherwise)", x)
	}
	sends, _ := a.s.Fleet().SendsSince(0, nil)
	b.s.Fleet().MergeSends(sends)
	if n := hits(); n != 0 {
		t.Fatalf("with a's 10k-token prompt queued there: %d of 40 picks go to endpoint %d", n, x)
	}
	// ~2.5 s of prefill at the default speed: after it, the endpoint is
	// as good as the others again.
	b.advance(5 * time.Second)
	if n := hits(); n == 0 {
		t.Fatalf("after the prefill: endpoint %d gets none of 40 picks", x)
	}
}

// What the other proxies' sends write into an endpoint's KV cache (their
// prefill and expected output, as the fleet exchange brings them) pushes
// the prefixes sent there before towards eviction, as this proxy's own
// sends do: a prefix stays believed cached after a few others' sends and
// is forgotten once they wrote more than the whole cache.
func TestCostOthersWritesEvict(t *testing.T) {
	f, cached := sentToBusyReplica(t)
	others := func(n int, prefill, output float64) {
		var sends []picker.Send
		for range n {
			sends = append(sends, picker.Send{Endpoint: f.es[0].Hash, Prefill: prefill, Output: output, At: f.now.UnixNano()})
		}
		f.s.Fleet().MergeSends(sends)
	}
	others(4, 1500, 500) // 8k tokens of a 32k-token cache
	if cached() == 0 {
		t.Fatal("forgotten after the others wrote a quarter of the cache")
	}
	others(10, 2500, 500) // 30k more: beyond the whole cache
	if c := cached(); c != 0 {
		t.Fatalf("still believed cached (%v tokens) after the others wrote more than the whole cache", c)
	}
}

// One send counts as at most a whole cache of writes, however large the
// output a client asks for (max_tokens) or another proxy reports: the
// prefixes before it are forgotten (a cache may have been written), but
// the endpoint's write count moves by one cache per send, not by what a
// client or a peer claims.
func TestCostOneSendWritesAtMostACache(t *testing.T) {
	f, cached := sentToBusyReplica(t)
	before := f.es[0].Written()
	req := &picker.Request{Model: "m", MaxTokens: 1 << 40, Body: chatBody("", "write forever")}
	ep, err := f.s.Pick(req, f.es)
	if err != nil {
		t.Fatal(err)
	}
	ep.Acquire(f.now)
	ep.Release()
	f.s.Fleet().MergeSends([]picker.Send{{Endpoint: f.es[0].Hash, Prefill: 1e15, Output: math.Inf(1), At: f.now.UnixNano()}})
	if w := f.es[0].Written() - before; w > 2*32768 {
		t.Fatalf("two sends counted as %d tokens written, want at most two caches (2 × 32768)", w)
	}
	if c := cached(); c != 0 {
		t.Fatalf("a cache-sized write left the prefix believed cached (%v tokens)", c)
	}
}

// A merged send is believed cached after its own writes, however large:
// only what is written there after it counts towards evicting it, as for
// this proxy's own sends.
func TestCostMergedSendOutlivesItsOwnWrites(t *testing.T) {
	a, b := newCostFleet(t, 2), newCostFleet(t, 2)
	b.s.SetEndpoints(b.es)
	p := chatBody(longSystem, "the question")
	x := a.pick(p)
	sends, _ := a.s.Fleet().SendsSince(0, nil)
	sends[0].Prefill, sends[0].Output = 1e9, 1e9 // a whole cache, at most
	b.s.Fleet().MergeSends(sends)
	found := false
	for _, c := range b.explain(p).Candidates {
		if c.Endpoint == b.es[x].Address {
			found = true
			if c.CachedTokens == 0 {
				t.Fatal("another proxy's send is forgotten by its own writes")
			}
		}
	}
	if !found {
		t.Fatalf("endpoint %s is not a candidate", b.es[x].Address)
	}
}

// A request waiting beside a batch with free slots waits only for the
// prefill ahead of it (the step's token budget goes to a long prompt
// admitted before it): a prompt whose cached home shows one waiting stays
// home. Where the batch is as large as any seen there, the waiting one
// waits for a running request to finish, and the prompt goes elsewhere.
// Before any scrape showed a running batch (a server's first step reports
// its prompts waiting until it ends) the cap is unknown, not zero.
func TestCostQueueBesideFreeSlotsWaitsForPrefill(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seen     float64 // the largest batch a scrape showed
		running  float64 // the batch beside the waiting request
		stayHome bool
	}{
		{"free slots", 8, 1, true},
		{"batch as large as seen", 1, 1, false},
		{"no batch seen yet", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCostFleet(t, 4)
			f.s.SetEndpoints(f.es)
			for i := range f.state {
				f.state[i].Running = tc.seen
			}
			f.scrape()
			home := f.pick(chatBody(longSystem, "the first question"))
			f.advance(2 * time.Second)
			for i := range f.state {
				f.state[i].Running = tc.running
			}
			f.state[home].Waiting = 1
			f.scrape()
			q := chatBody(longSystem, "the second question")
			var wait, prefill float64
			for _, c := range f.explain(q).Candidates {
				if c.Endpoint == f.es[home].Address {
					wait = c.Wait
				} else {
					prefill = c.Prefill
				}
			}
			if got := f.pick(q); (got == home) != tc.stayHome {
				t.Fatalf("went to %d, home %d: want home %v (home's wait %.2f s, a cold prefill elsewhere %.2f s)", got, home, tc.stayHome, wait, prefill)
			}
		})
	}
}

// burstProxy is one of 4 proxies in front of the same 8 idle endpoints
// (its own endpoint state, as every proxy pod has), scraped at now, with
// no fleet exchange: what a proxy knows at the start of a burst.
func burstProxy(t *testing.T, now time.Time) ([]*endpoints.Endpoint, *picker.Scheduler) {
	t.Helper()
	es := proxyFleet(t, 8, 4)
	for _, e := range es {
		e.SetMetrics(&endpoints.Metrics{KVCapacity: 32768, At: now})
	}
	s, err := picker.FromProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetClock(func() time.Time { return now })
	return es, s
}

// A burst of new prompt groups split over 4 proxies: each proxy gets its
// own share of every group, in its own order, all at once (no scrape and
// no exchange in between), and its own sends leave its view of the
// replicas' load uneven in its own way. The proxies still send each
// group to the same replica: a proxy blind to the others prices its own
// unseen load evenly for prompts the plan homes, so the plan, which
// they share, decides — rather than each proxy's share of the burst,
// which would give a group a copy per proxy.
func TestCostBurstProxiesAgree(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	esA, a := burstProxy(t, now)
	esB, b := burstProxy(t, now)
	const groups = 16
	body := func(g, i int) []byte {
		return chatBody(fmt.Sprintf("You are assistant %d. ", g)+longSystem, fmt.Sprintf("question %d", i))
	}
	send := func(s *picker.Scheduler, es []*endpoints.Endpoint, g, i int) string {
		ep, err := s.Pick(&picker.Request{Model: "m", Body: body(g, i)}, es)
		if err != nil {
			t.Fatal(err)
		}
		ep.Acquire(now) // still open: the burst is in flight
		return ep.Address
	}
	where := make([]map[string]bool, groups)
	for g := range where {
		where[g] = map[string]bool{}
	}
	// a: every group twice, in order; b: unrelated prompts first, then
	// every group twice in reverse order.
	for g := range groups {
		where[g][send(a, esA, g, 0)] = true
		where[g][send(a, esA, g, 1)] = true
	}
	for i := range 5 {
		send(b, esB, 100+i, 0)
	}
	for g := groups - 1; g >= 0; g-- {
		where[g][send(b, esB, g, 2)] = true
		where[g][send(b, esB, g, 3)] = true
	}
	for g, w := range where {
		if len(w) != 1 {
			t.Errorf("group %d went to %d replicas (%v), want 1", g, len(w), w)
		}
	}
}

// While the fleet exchange brings another proxy's sends — to any of the
// pool's endpoints — this proxy's own send counts its KV-cache writes
// once, also on an endpoint the others have not sent to lately: their
// writes there arrive through the exchange when they happen. Without the
// exchange it counts them once per proxy (the others write about as much).
func TestCostOwnWritesCountOnceWithTheExchange(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	es := proxyFleet(t, 2, 4)
	// es[0] is busy, so the picks below go to es[1].
	es[0].SetMetrics(&endpoints.Metrics{KVCapacity: 32768, Waiting: 40, Running: 16, At: now})
	es[1].SetMetrics(&endpoints.Metrics{KVCapacity: 32768, At: now})
	s, err := picker.FromProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetClock(func() time.Time { return now })
	s.SetEndpoints(es)
	// Unrelated prompts of one length: each writes as much as the other.
	written := func(body []byte) int64 {
		t.Helper()
		before := es[1].Written()
		ep, err := s.Pick(&picker.Request{Model: "m", Body: body}, es)
		if err != nil {
			t.Fatal(err)
		}
		if ep != es[1] {
			t.Fatalf("picked %s, want the idle %s (the test cannot tell otherwise)", ep.Address, es[1].Address)
		}
		return es[1].Written() - before
	}
	blind := written(chatBody(strings.Repeat("a", 2000), "q"))
	s.Fleet().MergeSends([]picker.Send{{Endpoint: es[0].Hash, Prefill: 100, Output: 10, At: now.UnixNano()}})
	if !es[0].OthersLive(now) || es[1].OthersLive(now) {
		t.Fatal("the merged send should show on es[0] only (the test cannot tell otherwise)")
	}
	live := written(chatBody(strings.Repeat("b", 2000), "q"))
	if blind != 4*live {
		t.Fatalf("one send wrote %d tokens without the exchange and %d with it; want once per proxy (4×) without, once with", blind, live)
	}
}

// TestCostFirstByteClearsPrefilledBacklog: a response's first token takes
// its prompt off the endpoint's prefill backlog when the endpoint
// prefilled faster than the profile's speed, and the news, relayed
// through the fleet exchange, leaves another proxy counting the same
// backlog; with several proxies and nothing from the others arriving (the
// exchange down; another proxy's scrape is enough), or a first token
// later than the profile's speed, nothing changes; a lone proxy takes it
// off without any exchange.
func TestCostFirstByteClearsPrefilledBacklog(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	newProxy := func(proxies int) (*picker.Scheduler, []*endpoints.Endpoint, *time.Time) {
		es := proxyFleet(t, 2, proxies)
		for _, e := range es {
			e.SetMetrics(&endpoints.Metrics{KVCapacity: 1 << 20, At: now})
		}
		s, err := picker.FromProfile(nil)
		if err != nil {
			t.Fatal(err)
		}
		clock := now
		s.SetClock(func() time.Time { return clock })
		s.SetEndpoints(es)
		return s, es, &clock
	}
	a, aes, aclock := newProxy(2)
	b, bes, bclock := newProxy(2)
	req := &picker.Request{Model: "m", Body: chatBody(strings.Repeat("long prompt ", 2000), "q")}
	ep, err := a.Pick(req, aes)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 1e6 / 250 // the default profile: 250 ms per 1k tokens
	queued := ep.Backlog(now.UnixNano(), rate)
	if queued < 4000 {
		t.Fatalf("backlog %v after a prompt of about 6,000 tokens (the test cannot tell otherwise)", queued)
	}
	// The relay brings the send to the other proxy.
	sends, cur := a.Fleet().SendsSince(0, nil)
	b.Fleet().MergeSends(sends)
	other := bes[slices.IndexFunc(bes, func(e *endpoints.Endpoint) bool { return e.Hash == ep.Hash })]
	if got := other.Backlog(now.UnixNano(), rate); got != queued {
		t.Fatalf("the other proxy counts %v, want %v", got, queued)
	}
	// The first token 100 ms after the send: the backlog had drained 400
	// tokens of it at the profile's speed, the endpoint all. But nothing
	// from the other proxy has reached this one: with the exchange down
	// the others would not hear of it, so nothing is taken off.
	fb := now.Add(100 * time.Millisecond)
	*aclock, *bclock = fb, fb
	a.FirstByte(req, ep, fb)
	if got := ep.Backlog(fb.UnixNano(), rate); got != queued-400 {
		t.Fatalf("backlog %v after a first token with the exchange down, want %v", got, queued-400)
	}
	if news, _ := a.Fleet().SendsSince(cur, nil); len(news) != 0 {
		t.Fatalf("the exchange is told %+v while down", news)
	}
	// Another proxy's scrape arrives, and no send (a saturated fleet's
	// users all wait for answers): the exchange runs.
	idle := aes[slices.IndexFunc(aes, func(e *endpoints.Endpoint) bool { return e != ep })]
	if n := a.Fleet().MergeLoads([]picker.Load{{Endpoint: idle.Hash, Metrics: &endpoints.Metrics{At: fb}}}); n != 1 {
		t.Fatalf("%d relayed scrapes taken, want 1 (the test cannot tell otherwise)", n)
	}
	a.FirstByte(req, ep, fb)
	if got := ep.Backlog(fb.UnixNano(), rate); got != 0 {
		t.Fatalf("backlog %v after the first token, want 0", got)
	}
	news, cur := a.Fleet().SendsSince(cur, nil)
	if len(news) != 1 || !news[0].Prefilled || news[0].Endpoint != ep.Hash || math.Abs(news[0].Prefill-(queued-400)) > 1e-6 {
		t.Fatalf("the exchange is told %+v, want one prefilled record of %v tokens", news, queued-400)
	}
	b.Fleet().MergeSends(news)
	if got := other.Backlog(fb.UnixNano(), rate); got != 0 {
		t.Fatalf("the other proxy counts %v after the relayed first token, want 0", got)
	}
	// Another request's first token after the profile's speed would have
	// prefilled it says nothing new.
	req2 := &picker.Request{Model: "m", Body: chatBody(strings.Repeat("other prompt ", 2000), "q")}
	ep2, err := a.Pick(req2, aes)
	if err != nil {
		t.Fatal(err)
	}
	left := ep2.Backlog(fb.UnixNano(), rate)
	late := fb.Add(time.Duration(left/rate*1e9) + time.Millisecond)
	a.FirstByte(req2, ep2, late)
	if news, _ := a.Fleet().SendsSince(cur, nil); len(news) != 1 || news[0].Prefilled {
		t.Fatalf("a late first token told the exchange %+v, want only the second send", news)
	}
	// One proxy: no exchange to wait for.
	s, lone, _ := newProxy(1)
	req3 := &picker.Request{Model: "m", Body: chatBody(strings.Repeat("long prompt ", 2000), "q")}
	ep3, err := s.Pick(req3, lone)
	if err != nil {
		t.Fatal(err)
	}
	s.FirstByte(req3, ep3, fb)
	if got := ep3.Backlog(fb.UnixNano(), rate); got != 0 {
		t.Fatalf("one proxy's backlog %v after the first token, want 0", got)
	}
}
