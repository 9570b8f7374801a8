package loadgen

import (
	"cmp"
	"fmt"
	"slices"
)

// After returns, for every request, the index of the request it waits for
// (the previous turn of its session) or -1 when it is sent at its At. It
// is the dependency view of Sessions for replayers other than Run (the
// virtual-time simulator): request i is sent Requests[i].Delay after
// request After()[i] ended.
func (w *Workload) After() []int {
	out := make([]int, len(w.Requests))
	last := map[int]int{} // session → index of its latest request so far
	for i := range w.Requests {
		out[i] = -1
		s := w.Requests[i].Session
		if s <= 0 {
			continue
		}
		if prev, ok := last[s]; ok {
			out[i] = prev
		}
		last[s] = i
	}
	return out
}

// Validate checks what a replay relies on: times are not negative,
// sessions are not negative, and a closed loop (which sends as soon as a
// user is free) has no sessions, whose think times it could not honour.
func (w *Workload) Validate() error {
	if w.Concurrency < 0 {
		return fmt.Errorf("workload %q: concurrency %d < 0", w.Name, w.Concurrency)
	}
	for i := range w.Requests {
		r := &w.Requests[i]
		switch {
		case r.At < 0:
			return fmt.Errorf("workload %q: request %d arrives at %v, before the start", w.Name, i, r.At)
		case r.Delay < 0:
			return fmt.Errorf("workload %q: request %d has a negative think time %v", w.Name, i, r.Delay)
		case r.Session < 0:
			return fmt.Errorf("workload %q: request %d has session %d (want 0 for none or > 0)", w.Name, i, r.Session)
		case r.Session > 0 && w.Concurrency > 0:
			return fmt.Errorf("workload %q: request %d belongs to session %d, but a closed loop cannot replay sessions", w.Name, i, r.Session)
		case len(r.Body) == 0:
			return fmt.Errorf("workload %q: request %d has no body", w.Name, i)
		}
	}
	return nil
}

// schedule splits an open-loop workload into chains to replay: each chain
// starts with a request sent at its At (in At order, ties by index) and
// continues with the turns that wait for it, in order.
func (w *Workload) schedule() [][]int {
	after := w.After()
	next := make([]int, len(after))
	for i := range next {
		next[i] = -1
	}
	var roots []int
	for i, a := range after {
		if a < 0 {
			roots = append(roots, i)
		} else {
			next[a] = i
		}
	}
	slices.SortStableFunc(roots, func(a, b int) int {
		return cmp.Compare(w.Requests[a].At, w.Requests[b].At)
	})
	chains := make([][]int, len(roots))
	for k, r := range roots {
		for j := r; j >= 0; j = next[j] {
			chains[k] = append(chains[k], j)
		}
	}
	return chains
}
