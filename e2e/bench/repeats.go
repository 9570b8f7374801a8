package bench

import (
	"context"
	"slices"
)

// runRepeats runs the cells of every comparison in doubt after the grid
// again, alternating strategies within a workload, until each has
// o.Repeats runs. A comparison is in doubt when its ratio lies within a
// single run's noise of its target or misses it (Comparison.InDoubt); a
// target met by a wider margin keeps one run.
func runRepeats(ctx context.Context, o Options, rep *Report) error {
	if o.Repeats <= 1 {
		return nil
	}
	doubt := rep.inDoubt()
	for i := range o.Scenarios {
		sc := &o.Scenarios[i]
		names := doubt[sc.Workload.Name]
		if len(names) == 0 {
			continue
		}
		rep.Repeated[sc.Workload.Name] = names
		for range o.Repeats - 1 {
			for _, st := range o.Strategies {
				if !slices.Contains(names, st.Name) {
					continue
				}
				if err := rep.run(ctx, o, sc, st); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
