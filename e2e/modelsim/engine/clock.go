package engine

import (
	"context"
	"time"
)

// Clock maps wall-clock time to simulated time: simulated time runs 1/Scale
// times as fast as the wall clock (Scale 0.1 = ten times faster). Latencies
// the engine reports and records are differences of simulated times.
type Clock struct {
	scale    float64
	realBase time.Time
	simBase  time.Time
}

// NewClock starts a clock whose simulated time equals the wall clock now.
func NewClock(scale float64) *Clock {
	if scale <= 0 {
		scale = 1
	}
	now := time.Now()
	return &Clock{scale: scale, realBase: now, simBase: now.Round(0)}
}

// Scale is the wall seconds per simulated second.
func (c *Clock) Scale() float64 { return c.scale }

// Now is the current simulated time.
func (c *Clock) Now() time.Time {
	return c.simBase.Add(time.Duration(float64(time.Since(c.realBase)) / c.scale))
}

// Real converts a simulated duration to wall time.
func (c *Clock) Real(sim time.Duration) time.Duration {
	return time.Duration(float64(sim) * c.scale)
}

// Sim converts a wall duration to simulated time.
func (c *Clock) Sim(real time.Duration) time.Duration {
	return time.Duration(float64(real) / c.scale)
}

// SleepUntil blocks until simulated time t, reusing timer. Sleeping towards an
// absolute deadline keeps timer overshoot from accumulating over many steps.
func (c *Clock) SleepUntil(ctx context.Context, t time.Time, timer *time.Timer) error {
	deadline := c.realBase.Add(c.Real(t.Sub(c.simBase)))
	d := time.Until(deadline)
	if d <= 0 {
		return ctx.Err()
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		timer.Stop()
		return ctx.Err()
	}
}
