package main

import (
	"strings"
	"testing"
	"time"
)

// TestRoundsMerged checks a report merges rounds as it says: medians per
// column, counts summed, and verdicts counting the rounds within a goal.
func TestRoundsMerged(t *testing.T) {
	r := &report{cfg: runConfig{rounds: 3, rate: 1000}, targets: []string{"direct", "infergate", "nginx"}}
	ms := time.Millisecond
	for i, ig := range []time.Duration{ms * 3 / 10, ms / 20, ms / 10} { // added p50 per round: 0.2 ms, -0.05 ms, 0 ms
		r.add("json-rate", "direct", stats{n: 100, p50: ms / 10, p99: ms})
		r.add("json-rate", "infergate", stats{n: 100, errors: i, p50: ig, p99: ms})
	}
	for _, rps := range [][2]float64{{700, 1000}, {900, 1000}, {850, 1000}} {
		r.add("json-max", "infergate", stats{n: 1, rps: rps[0]})
		r.add("json-max", "nginx", stats{n: 1, rps: rps[1]})
	}
	ig, _ := r.get("json-rate", "infergate")
	if ig.p50 != ms/10 || ig.n != 300 || ig.errors != 3 {
		t.Fatalf("merged infergate json-rate = p50 %v, %d requests, %d errors; want the median 100µs, 300, 3", ig.p50, ig.n, ig.errors)
	}
	if m, _ := r.get("json-max", "infergate"); m.rps != 850 {
		t.Fatalf("merged rps %v, want the median 850", m.rps)
	}
	v := strings.Join(r.verdicts(), "\n")
	for _, want := range []string{"added p50 at 1000 req/s: +0.000 ms (goal ≤ 0.100 ms) — met; rounds within the goal: 2 of 3",
		"max req/s infergate/nginx (1 KB JSON): 0.85× (goal ≥ 0.8×) — met; rounds within the goal: 2 of 3"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdicts lack %q:\n%s", want, v)
		}
	}
	r.add("json-max", "nginx", stats{rps: 1})
	if m, _ := r.get("json-max", "nginx"); m.rps != 1000 {
		t.Fatalf("median of four rounds = %v, want the mean of the middle two, 1000", m.rps)
	}
}
