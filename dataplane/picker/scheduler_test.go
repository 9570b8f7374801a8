package picker_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// fresh sets metrics scraped just now.
func fresh(e *endpoints.Endpoint, m endpoints.Metrics) {
	m.At = time.Now()
	e.SetMetrics(&m)
}

func scoreOf(t *testing.T, s picker.Scorer, req *picker.Request, es []*endpoints.Endpoint) []float64 {
	t.Helper()
	return picker.ScoreForTest(s, req, es, time.Now())
}

func TestQueueScorer(t *testing.T) {
	es := eps(3)
	fresh(es[0], endpoints.Metrics{Waiting: 0})
	fresh(es[1], endpoints.Metrics{Waiting: 10})
	fresh(es[2], endpoints.Metrics{Waiting: 5})
	got := scoreOf(t, picker.QueueScorer{}, &picker.Request{}, es)
	if got[0] != 1 || got[1] != 0 || got[2] != 0.5 {
		t.Fatalf("min-max: %v", got)
	}
	// A spread below MinSpread does not use the whole range.
	fresh(es[1], endpoints.Metrics{Waiting: 1})
	fresh(es[2], endpoints.Metrics{Waiting: 0})
	got = scoreOf(t, picker.QueueScorer{MinSpread: 4}, &picker.Request{}, es)
	if got[0] != 1 || got[1] != 0.75 {
		t.Fatalf("min spread: %v", got)
	}
	// Requests sent since the scrape count as queued.
	es[0].Acquire(time.Now())
	es[0].Acquire(time.Now())
	got = scoreOf(t, picker.QueueScorer{}, &picker.Request{}, es)
	if got[0] != 0 || got[2] != 1 {
		t.Fatalf("since-scrape blend: %v", got)
	}
	// Stale endpoints score 0 while others are fresh.
	es[2].SetMetrics(&endpoints.Metrics{At: time.Now().Add(-time.Second)})
	if got = scoreOf(t, picker.QueueScorer{}, &picker.Request{}, es); got[2] != 0 {
		t.Fatalf("stale: %v", got)
	}
}

func TestRunningScorer(t *testing.T) {
	es := eps(2)
	fresh(es[0], endpoints.Metrics{Running: 8})
	fresh(es[1], endpoints.Metrics{Running: 2})
	got := scoreOf(t, picker.RunningScorer{}, &picker.Request{}, es)
	if got[0] != 0 || got[1] != 1 {
		t.Fatalf("%v", got)
	}
}

func TestKVCacheScorer(t *testing.T) {
	es := eps(3)
	fresh(es[0], endpoints.Metrics{KVCacheUsage: 0.25})
	fresh(es[1], endpoints.Metrics{KVCacheUsage: 1.5}) // clamped
	got := scoreOf(t, picker.KVCacheScorer{}, &picker.Request{}, es)
	if got[0] != 0.75 || got[1] != 0 || got[2] != 0 {
		t.Fatalf("%v", got)
	}
}

func chatBody(system, question string) []byte {
	return fmt.Appendf(nil, `{"model":"m","stream":true,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, system, question)
}

func TestPrefixScorerIndexAndAffinity(t *testing.T) {
	es := eps(8)
	for _, e := range es {
		fresh(e, endpoints.Metrics{})
	}
	s := picker.NewPrefixScorer(0)
	sys := strings.Repeat("you are a helpful assistant. ", 200)
	req := &picker.Request{Model: "m", Body: chatBody(sys, "q1")}
	got := scoreOf(t, s, req, es)
	ones, halves := 0, 0
	for _, v := range got {
		switch v {
		case 1:
			ones++
		case 0.5:
			halves++
		}
	}
	if ones != 1 || halves != 1 {
		t.Fatalf("exactly one endpoint must get rendezvous affinity and one the runner-up's: %v", got)
	}
	// Another scorer (another proxy) with no shared state agrees.
	got2 := scoreOf(t, picker.NewPrefixScorer(0), &picker.Request{Model: "m", Body: chatBody(sys, "another question")}, es)
	if fmt.Sprint(got) != fmt.Sprint(got2) {
		t.Fatalf("proxies disagree: %v vs %v", got, got2)
	}
	// Overloading the affinity endpoint moves the prefix to the next one,
	// the same on every proxy.
	var target int
	for i, v := range got {
		if v == 1 {
			target = i
		}
	}
	fresh(es[target], endpoints.Metrics{Waiting: 40})
	got3 := scoreOf(t, picker.NewPrefixScorer(0), req, es)
	if got3[target] == 1 {
		t.Fatalf("overloaded endpoint kept affinity: %v", got3)
	}
	// The own index credits where requests went, by matched fraction.
	sched := picker.NewScheduler([]picker.WeightedScorer{{Scorer: s, Weight: 1}}, false)
	ep, err := sched.Pick(req, es)
	if err != nil || ep == es[target] {
		t.Fatalf("pick %v %v", ep, err)
	}
	fresh(es[target], endpoints.Metrics{})
	got4 := scoreOf(t, s, &picker.Request{Model: "m", Body: chatBody(sys, "q3")}, es)
	var idx int
	for i, e := range es {
		if e == ep {
			idx = i
		}
	}
	if got4[target] != 1 || got4[idx] < 0.9 {
		t.Fatalf("index: spill-over endpoint %d should keep most of its match: %v", idx, got4)
	}
	// Another model does not share the prefix.
	got5 := scoreOf(t, s, &picker.Request{Model: "other", Body: chatBody(sys, "q1")}, es)
	sum := 0.0
	for _, v := range got5 {
		sum += v
	}
	if sum != 1.5 {
		t.Fatalf("model must seed the chain (only rendezvous affinity 1 + 0.5 expected): %v", got5)
	}
}

func TestBlockHashes(t *testing.T) {
	a := picker.AppendBlockHashes(nil, "m", []byte(`{"model":"m","stream":true,"messages":"`+strings.Repeat("x", 200)))
	b := picker.AppendBlockHashes(nil, "m", []byte(`{"model":"m","messages":"`+strings.Repeat("x", 200)+"tail"))
	if len(a) != 3 || fmt.Sprint(a) != fmt.Sprint(b[:3]) {
		t.Fatalf("fields before the prompt must not matter: %v %v", a, b)
	}
	long := picker.AppendBlockHashes(nil, "m", []byte(strings.Repeat("y", 64*1000)))
	if len(long) != picker.MaxBlocks {
		t.Fatalf("blocks capped at %d, got %d", picker.MaxBlocks, len(long))
	}
}

func TestSaturationAndShed(t *testing.T) {
	now := time.Now()
	es := eps(2)
	es[0].SetMetrics(&endpoints.Metrics{Waiting: 5, At: now})
	es[1].SetMetrics(&endpoints.Metrics{KVCacheUsage: 0.4, At: now})
	if got := picker.Saturation(es, now); got != 0.75 {
		t.Fatalf("saturation %v, want (1 + 0.5)/2", got)
	}
	es[1].SetMetrics(&endpoints.Metrics{KVCacheUsage: 0.4, At: now.Add(-time.Second)})
	if got := picker.Saturation(es, now); got != 1 {
		t.Fatalf("a stale pod counts as saturated: %v", got)
	}
	if picker.Shed(0, 5) || picker.Shed(1, 5) || !picker.Shed(-1, 1) || picker.Shed(-1, 0.99) {
		t.Fatal("shed rule")
	}

	sched := picker.NewScheduler([]picker.WeightedScorer{{Scorer: picker.QueueScorer{}, Weight: 1}}, true)
	for _, e := range es {
		fresh(e, endpoints.Metrics{Waiting: 10})
	}
	if _, err := sched.Pick(&picker.Request{Priority: -1}, es); !errors.Is(err, picker.ErrShed) {
		t.Fatalf("sheddable on saturated pool: %v", err)
	}
	for _, p := range []int32{0, 1} {
		if _, err := sched.Pick(&picker.Request{Priority: p}, es); err != nil {
			t.Fatalf("priority %d must never be shed: %v", p, err)
		}
	}
	noShed := picker.NewScheduler([]picker.WeightedScorer{{Scorer: picker.QueueScorer{}, Weight: 1}}, false)
	if _, err := noShed.Pick(&picker.Request{Priority: -1}, es); err != nil {
		t.Fatalf("shedding off: %v", err)
	}
	if _, err := sched.Pick(&picker.Request{}, nil); !errors.Is(err, picker.ErrNoEndpoint) {
		t.Fatalf("no candidates: %v", err)
	}
}

func TestHeadroom(t *testing.T) {
	now := time.Now()
	es := eps(2)
	if got := picker.Headroom(es, now); got != 2 {
		t.Fatalf("no metrics yet: headroom %d, want 2 (nothing known, nothing held)", got)
	}
	es[0].SetMetrics(&endpoints.Metrics{Waiting: 1, At: now})
	es[1].SetMetrics(&endpoints.Metrics{KVCacheUsage: 0.4, At: now})
	// Saturation (0.2 + 0.5)/2 = 0.35: 0.65 × 5 × 2 = 6.5 more requests.
	if got := picker.Headroom(es, now); got != 6 {
		t.Fatalf("headroom %d, want 6", got)
	}
	es[1].SetMetrics(&endpoints.Metrics{Waiting: 9, At: now})
	if got := picker.Headroom(es, now); got != 0 {
		t.Fatalf("saturated pool: headroom %d", got)
	}
	es[1].SetMetrics(&endpoints.Metrics{At: now.Add(-time.Second)})
	// (1 + 0.2)/2 = 0.6: 0.4 × 5 × 2 = 4.
	if got := picker.Headroom(es, now); got != 4 {
		t.Fatalf("one stale (counts 1) and one at 0.2: headroom %d, want 4", got)
	}
	if got := picker.Headroom(nil, now); got != 1 {
		t.Fatalf("no endpoints: headroom %d, want 1 (the picker answers)", got)
	}
}

func TestSchedulerEjects(t *testing.T) {
	es := eps(3)
	fresh(es[0], endpoints.Metrics{Waiting: 0})
	fresh(es[1], endpoints.Metrics{Waiting: 4})
	fresh(es[2], endpoints.Metrics{Waiting: 8})
	sched, err := picker.FromProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sched.Pick(&picker.Request{}, es); got != es[0] {
		t.Fatalf("want the idle endpoint, got %s", got.Address)
	}
	for range 3 {
		sched.Done(es[0], false)
	}
	if got, _ := sched.Pick(&picker.Request{}, es); got == es[0] {
		t.Fatal("ejected endpoint picked")
	}
	if got, _ := sched.Pick(&picker.Request{}, es); got != es[1] {
		t.Fatalf("want the idlest endpoint left, got %s", got.Address)
	}
	// When every endpoint is ejected, they serve anyway.
	for _, e := range es[1:] {
		for range 3 {
			sched.Done(e, false)
		}
	}
	if _, err := sched.Pick(&picker.Request{}, es); err != nil {
		t.Fatalf("all ejected: %v", err)
	}
}

func TestFromProfile(t *testing.T) {
	// The default is the cost model alone (no weighted scorers), shedding.
	s, err := picker.FromProfile(nil)
	if err != nil || !s.Sheds() || len(s.Scorers()) != 0 || s.Fleet() == nil {
		t.Fatalf("default: %v %v", s, err)
	}
	if _, ok := s.Fleet().(*picker.CostModel); !ok {
		t.Fatalf("default picker is not the cost model: %T", s.Fleet())
	}
	// The reference scorers stay available by name.
	s, err = picker.FromProfile(&snapshotv1.PickerProfile{ShedSheddable: true, Scorers: []*snapshotv1.PluginRef{
		{Name: "queue", Weight: 2}, {Name: "kv-cache", Weight: 2}, {Name: "prefix-cache", Weight: 3}}})
	if err != nil || len(s.Scorers()) != 4 {
		t.Fatalf("weighted: %v %v", s, err)
	}
	s, err = picker.FromProfile(&snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{
		{Name: "running", Weight: 1}, {Name: "lora", Weight: 0},
		{Name: "prefix-cache", Weight: 1, Parameters: map[string]string{"load-factor": "2"}},
	}})
	if err != nil || s.Sheds() || len(s.Scorers()) != 2 {
		t.Fatalf("custom: %+v %v", s, err)
	}
	for _, bad := range []*snapshotv1.PluginRef{{Name: "nope", Weight: 1}, {Name: "queue", Weight: -1},
		{Name: "queue", Weight: 1, Parameters: map[string]string{"min-spread": "x"}}} {
		if _, err := picker.FromProfile(&snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{bad}}); err == nil {
			t.Fatalf("%v must be refused", bad)
		}
	}
}

func TestBaselines(t *testing.T) {
	es := eps(3)
	rr := &picker.RoundRobin{}
	for i := range 6 {
		if got, _ := rr.Pick(nil, es); got != es[i%3] {
			t.Fatal("round robin order")
		}
	}
	if _, err := (picker.Random{}).Pick(nil, nil); err == nil {
		t.Fatal("random without candidates")
	}
}

func TestSchedulersCache(t *testing.T) {
	c := picker.NewSchedulers()
	a, err := c.For("pool", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.For("pool", nil); b != a {
		t.Fatal("same profile must keep the scheduler (and its prefix index)")
	}
	p := picker.DefaultProfile()
	p.ShedSheddable = false
	if b, _ := c.For("pool", p); b == a || b.Sheds() {
		t.Fatal("a changed profile builds a new scheduler")
	}
	if _, err := c.For("bad", &snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{{Name: "x", Weight: 1}}}); err == nil {
		t.Fatal("bad profile")
	}
	c.Retain(func(string) bool { return false })
	if b, _ := c.For("pool", p); b.Sheds() {
		t.Fatal("unexpected")
	}
}

// With 4 proxies, the request this proxy just sent to a prompt's endpoint
// counts as one request more there until the next scrape, not as four: the
// prompt's next request stays where its prefix is cached instead of moving
// to the runner-up, which every proxy would otherwise do after each of its
// own sends.
func TestFourProxiesOwnSendKeepsAffinity(t *testing.T) {
	reg := endpoints.NewRegistry(slog.New(slog.DiscardHandler), endpoints.Options{Proxies: 4})
	defer reg.Close()
	var specs []endpoints.Spec
	for i := range 8 {
		specs = append(specs, endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)})
	}
	var es []*endpoints.Endpoint
	for _, e := range reg.Sync(specs) {
		es = append(es, e)
	}
	// Plain rendezvous affinity: the runner-up gets half the prefix score.
	s, err := picker.FromProfile(&snapshotv1.PickerProfile{Scorers: []*snapshotv1.PluginRef{
		{Name: picker.PluginQueue, Weight: 2}, {Name: picker.PluginKVCache, Weight: 2},
		{Name: picker.PluginPrefix, Weight: 3, Parameters: map[string]string{"balance": "0"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		fresh(e, endpoints.Metrics{})
	}
	req := &picker.Request{Model: "m", Body: chatBody(strings.Repeat("be helpful and brief. ", 150), "q")}
	first, err := s.Pick(req, es)
	if err != nil {
		t.Fatal(err)
	}
	first.Acquire(time.Now())
	next, err := s.Pick(req, es)
	if err != nil {
		t.Fatal(err)
	}
	if next != first {
		t.Fatalf("one own request moved the prompt from %s to %s", first.Address, next.Address)
	}
}
