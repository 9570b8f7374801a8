package main

import (
	"fmt"
	"strings"
	"time"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// staggerSection shows 4 proxies against 1 on the closed loops whose
// prompts repeat, with the users' first requests all at once (the
// benchmark's start) and spaced by each of staggers: how far the loss of
// 4 proxies is the start's burst arriving faster than the fleet exchange
// tells each proxy where the others sent (fleetv1.SendsEvery, one period
// late).
func staggerSection(names []string, shared map[string]bool, closed map[string]int, get func(w, s string, p int) (metrics, bool)) string {
	var b strings.Builder
	b.WriteString("## 4 proxies against 1 when a burst outruns the fleet exchange\n\n")
	fmt.Fprintf(&b, "A closed loop's users start at once: each proxy picks its share of the first requests before the "+
		"fleet exchange (every %d ms, one period late) has told it where the other proxies sent theirs, and prompt groups "+
		"land on more replicas than one proxy would put them on. Here the users' first requests are spaced instead, from "+
		"a burst many exchange periods shorter than itself to one the exchange keeps up with: TTFT p90 on 1 and 4 proxies "+
		"and 4 against 1 (target ≤ 1.1×), and the cache hit on 4.\n\n", fleetv1.SendsEvery.Milliseconds())
	b.WriteString("| workload | users start | burst of first requests | 1 proxy | 4 proxies | 4 vs 1 | cache hit, 4 proxies |\n|---|---|---|---|---|---|---|\n")
	for _, w := range names {
		if !shared[w] || closed[w] == 0 {
			continue
		}
		rows := append([]time.Duration{0}, staggers...)
		for _, d := range rows {
			name, start := staggeredName(d), fmt.Sprintf("%v apart", d)
			if d == 0 {
				name, start = "ours", "at once"
			}
			one, ok1 := get(w, name, 1)
			four, ok4 := get(w, name, 4)
			if !ok1 || !ok4 || one.ttft90 <= 0 {
				continue
			}
			r := four.ttft90 / one.ttft90
			mark := "✅"
			if r > 1.1 {
				mark = "❌"
			}
			fmt.Fprintf(&b, "| %s | %s | %v | %.2f s | %.2f s | %s %.2f× | %.1f %% |\n", w, start, time.Duration(closed[w])*d,
				one.ttft90, four.ttft90, mark, r, 100*four.hit)
		}
	}
	b.WriteString("\n")
	return b.String()
}
