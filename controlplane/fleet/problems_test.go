package fleet

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

func problemsReport(ps ...*fleetv1.PoolProblem) *fleetv1.KeyReport {
	return &fleetv1.KeyReport{Problems: &fleetv1.PoolProblems{Problems: ps}}
}

// waitProblems polls agg until gw's problems are want (nil: none).
func waitProblems(t *testing.T, agg *Aggregator, gw string, want []Problem) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := agg.Problems()[gw]
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("problems of %s: %+v, want %+v", gw, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A proxy's problems stand while its stream reports them: a report
// without the field leaves them, a new set replaces them, an empty one
// clears them, and the end of the stream drops them. Another gateway's
// proxies see none of them; several proxies' problems are listed each.
func TestProblemsFollowTheStream(t *testing.T) {
	var changes atomic.Int64
	agg := NewAggregator(Options{PushEvery: 10 * time.Millisecond, ProblemsChanged: func() { changes.Add(1) }})
	c := serve(t, NewService(agg, quiet(), nil))
	const gw, pool = "ns/gw", "ns/gw/inferencepool/ns/p"
	a := open(t, c, "a", gw)
	bad := fleetv1.NewProblem(pool, fleetv1.ReasonTokenizerUnusable, "parse /t.json: unexpected end of JSON input")
	if err := a.Send(problemsReport(bad)); err != nil {
		t.Fatal(err)
	}
	wantA := Problem{Node: "a", Pool: pool, Reason: fleetv1.ReasonTokenizerUnusable, Message: bad.Message}
	waitProblems(t, agg, gw, []Problem{wantA})
	if changes.Load() != 1 {
		t.Errorf("%d change calls, want 1", changes.Load())
	}

	// Keys only: the problems stand; the same set again is no change.
	if err := a.Send(report(pool, time.Minute, use(7, 0, false))); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(problemsReport(bad)); err != nil {
		t.Fatal(err)
	}
	b := open(t, c, "b", gw)
	if err := b.Send(problemsReport(bad)); err != nil {
		t.Fatal(err)
	}
	wantB := wantA
	wantB.Node = "b"
	waitProblems(t, agg, gw, []Problem{wantA, wantB})
	// One pool, one reason, two proxies.
	const metric = "infergate_controlplane_fleet_pool_problems"
	if err := testutil.CollectAndCompare(NewCollector(agg, nil), strings.NewReader("# HELP "+metric+" "+problemsHelp+"\n# TYPE "+metric+" gauge\n"+metric+" 1\n"), metric); err != nil {
		t.Error(err)
	}
	if changes.Load() != 2 {
		t.Errorf("%d change calls, want 2 (a's repeated set is no change)", changes.Load())
	}
	other := open(t, c, "c", "ns/other")
	if err := other.Send(problemsReport()); err != nil {
		t.Fatal(err)
	}
	if got := agg.Problems()["ns/other"]; got != nil {
		t.Errorf("the other gateway has problems %+v", got)
	}

	// a's tokenizer is fixed: only b's stands.
	if err := a.Send(problemsReport()); err != nil {
		t.Fatal(err)
	}
	waitProblems(t, agg, gw, []Problem{wantB})
	// b goes away.
	if err := b.CloseSend(); err != nil {
		t.Fatal(err)
	}
	waitProblems(t, agg, gw, nil)
	if changes.Load() != 4 {
		t.Errorf("%d change calls, want 4", changes.Load())
	}
}

// A report with a problem the contract refuses is refused whole (the
// stream ends with InvalidArgument) and records nothing.
func TestProblemsRefused(t *testing.T) {
	agg := NewAggregator(Options{})
	c := serve(t, NewService(agg, quiet(), nil))
	a := open(t, c, "a", "ns/gw")
	if err := a.Send(problemsReport(&fleetv1.PoolProblem{Pool: "p", Reason: "not a reason", Message: "m"})); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := a.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("stream ended with %v, want InvalidArgument", err)
		}
		break
	}
	if got := agg.Problems(); len(got) != 0 {
		t.Fatalf("problems %+v after a refused report", got)
	}
}

// Problems not reported again within the TTL go (a proxy connected to a
// replica that relays its reports leaves without this replica seeing its
// stream end).
func TestProblemsExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	agg := NewAggregator(Options{Now: func() time.Time { return now }})
	agg.problems.set("ns/gw", "a", 0, problemsReport(&fleetv1.PoolProblem{Pool: "p", Reason: "R"}).Problems)
	now = now.Add(fleetv1.ProblemsTTL - time.Second)
	if got := agg.Problems()["ns/gw"]; len(got) != 1 {
		t.Fatalf("problems %+v before the TTL, want one", got)
	}
	now = now.Add(2 * time.Second)
	if got := agg.Problems(); len(got) != 0 {
		t.Fatalf("problems %+v after the TTL, want none", got)
	}
	if len(agg.problems.gw) != 0 {
		t.Fatalf("expired problems still held: %v", agg.problems.gw)
	}
}

// A proxy's problems reach the other replica through the relay and are
// cleared there by its next set; a relayed set never overrides what a
// proxy's own stream to this replica reported.
func TestProblemsRelayed(t *testing.T) {
	rs := startReplicas(t, 2, nil)
	const gw = "ns/gw"
	a := openTaking(t, rs[0].api, "a", gw)
	bad := fleetv1.NewProblem("p", fleetv1.ReasonTokenizerUnusable, "missing")
	want := []Problem{{Node: "a", Pool: "p", Reason: fleetv1.ReasonTokenizerUnusable, Message: "missing"}}
	// Report until the relay is up (reports made before it are lost).
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(rs[1].agg.Problems()[gw], want) {
		if time.Now().After(deadline) {
			t.Fatalf("the other replica has %+v, want %+v", rs[1].agg.Problems()[gw], want)
		}
		if err := a.Send(problemsReport(bad)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.Send(problemsReport()); err != nil {
		t.Fatal(err)
	}
	waitProblems(t, rs[1].agg, gw, nil)

	// Proxy b is connected to replica 1 and fine; a relayed report of an
	// older stream of b to replica 0 says otherwise: replica 1 keeps b's
	// own word.
	b := openTaking(t, rs[1].api, "b", gw)
	if err := b.Send(problemsReport(bad)); err != nil {
		t.Fatal(err)
	}
	wantB := []Problem{{Node: "b", Pool: "p", Reason: fleetv1.ReasonTokenizerUnusable, Message: "missing"}}
	waitProblems(t, rs[1].agg, gw, wantB)
	rs[1].agg.problems.set(gw, "b", 0, problemsReport().Problems)
	if got := rs[1].agg.Problems()[gw]; !slices.Equal(got, wantB) {
		t.Fatalf("a relayed set overrode the local stream's: %+v", got)
	}
}
