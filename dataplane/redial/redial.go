// Package redial keeps a proxy's streams to the control plane (xDS, fleet
// keys) open: it reruns a stream after it ends, waiting a jittered,
// growing backoff in between.
package redial

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Loop runs stream until ctx is done. After each end it waits a random
// time in [backoff/2, backoff] — jitter, so a fleet of proxies does not
// reconnect in lockstep after a control-plane restart — where backoff
// starts at minWait, doubles up to maxWait after each attempt, and starts
// over once a stream was answered (the server sent something). what names
// the stream in the log line of each retry.
func Loop(ctx context.Context, minWait, maxWait time.Duration, log *slog.Logger, what string,
	stream func(context.Context) (answered bool, err error)) {
	backoff := minWait
	for {
		answered, err := stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if answered {
			backoff = minWait
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn(what+" stream ended, reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxWait)
	}
}
