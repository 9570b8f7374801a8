package routesim

import (
	"github.com/infergate/infergate/e2e/loadgen"
)

// Workload is a list of jobs, open loop (arrival times and dependencies)
// or, with Concurrency > 0, a closed loop of that many users each sending
// the next job when their previous one ends.
type Workload struct {
	Name        string
	Jobs        []Job
	Concurrency int
}

// FromLoadgen converts a benchmark workload (classes become priorities as
// the benchmark's objectives map them).
func FromLoadgen(w loadgen.Workload) Workload {
	out := Workload{Name: w.Name, Concurrency: w.Concurrency}
	after := w.After()
	for i, r := range w.Requests {
		var prio int32
		switch r.Class {
		case "critical":
			prio = 1
		case "sheddable":
			prio = -1
		}
		out.Jobs = append(out.Jobs, Job{At: r.At, After: after[i], Delay: r.Delay, Model: r.Model, Body: r.Body, Priority: prio, MaxTokens: r.MaxTokens})
	}
	return out
}
