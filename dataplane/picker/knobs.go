package picker

import (
	"os"
	"strconv"
)

// knobs are temporary experiment switches (IG_* environment variables).
type knobs struct {
	plan            bool
	backlog, inject int
	harm, displace  float64
	dmode           int
	hw              int
	tol             float64
}

func readKnobs() knobs {
	f := func(k string, d float64) float64 {
		if v, err := strconv.ParseFloat(os.Getenv(k), 64); err == nil {
			return v
		}
		return d
	}
	return knobs{plan: f("IG_PLAN", 1) > 0, backlog: int(f("IG_BACKLOG", 3)), inject: int(f("IG_INJECT", 0)),
		harm: f("IG_HARM", 0.25), displace: f("IG_DISPLACE", 1), dmode: int(f("IG_DMODE", 0)), hw: int(f("IG_HW", 1)), tol: f("IG_TOL", 0)}
}
