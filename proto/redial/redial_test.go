package redial

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestLoop checks the waits between attempts grow while nothing answers,
// start over after an answered stream, and that Loop ends with ctx.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const minWait, maxWait = 10 * time.Millisecond, time.Second
	var starts []time.Time
	answered := map[int]bool{6: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, minWait, maxWait, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", func(context.Context) (bool, error) {
			starts = append(starts, time.Now())
			if len(starts) == 7 {
				cancel()
			}
			return answered[len(starts)], errors.New("gone")
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not return after ctx was cancelled")
	}
	if len(starts) != 7 {
		t.Fatalf("%d attempts, want 7 (none after cancel)", len(starts))
	}
	// Unanswered attempts 1–5 wait within [b/2, b] of a backoff doubling
	// from 10 ms: at least 5, 10, 20, 40, 80 ms.
	for i, b := range []time.Duration{10, 20, 40, 80, 160} {
		b *= time.Millisecond
		if w := starts[i+1].Sub(starts[i]); w < b/2 {
			t.Errorf("wait after attempt %d = %v, want at least %v", i+1, w, b/2)
		}
	}
	// Attempt 6 was answered: the backoff starts over at 10 ms, where
	// without the reset it would be 320 ms (a wait of at least 160 ms).
	if w := starts[6].Sub(starts[5]); w >= 150*time.Millisecond {
		t.Errorf("wait after an answered stream = %v, want the backoff started over (≤ 10 ms)", w)
	}
}
