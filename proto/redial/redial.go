// Package redial keeps a proxy's streams to the control plane (xDS, fleet
// keys) open: it reruns a stream after it ends, waiting a jittered,
// growing backoff in between.
package redial

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Default bounds of the wait between reconnects. The cap is what a
// control plane coming back waits for its proxies: with jitter a proxy
// retries within 0.25–0.5 s of any moment, and gRPC's own reconnect
// backoff (120 s at most by default) is capped alike by Dial, so every
// proxy is back in sync within about a second of a restart. A refused
// connection costs the control plane next to nothing, so retrying twice a
// second while it is away is cheap even for many proxies.
const (
	DefaultMin = 250 * time.Millisecond
	DefaultMax = 500 * time.Millisecond
)

// Dial is grpc.NewClient for a stream Loop keeps open: with the caller's
// options (plaintext when there are none: loopback only), then extra, and
// gRPC's connection backoff bounded like Loop's waits, so a channel that
// failed while the control plane was away does not sit in a long backoff
// after it returned.
func Dial(addr string, opts []grpc.DialOption, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	opts = append(opts[:len(opts):len(opts)], extra...)
	opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: DefaultMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: DefaultMax},
		MinConnectTimeout: 5 * time.Second,
	}))
	return grpc.NewClient(addr, opts...)
}

// Bounds returns a client's configured wait bounds with the defaults for
// zero values (the cap at least the floor).
func Bounds(lo, hi time.Duration) (time.Duration, time.Duration) {
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	return lo, max(lo, hi)
}

// Loop runs stream until ctx is done. After each end it waits a random
// time in [backoff/2, backoff] — jitter, so a fleet of proxies does not
// reconnect in lockstep after a control-plane restart — where backoff
// starts at minWait, doubles up to maxWait after each attempt, and starts
// over once a stream was answered (the server sent something). what names
// the stream in the log line of each retry.
func Loop(ctx context.Context, minWait, maxWait time.Duration, log *slog.Logger, what string,
	stream func(context.Context) (answered bool, err error)) {
	backoff := minWait
	warned := false
	for {
		answered, err := stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if answered {
			backoff = minWait
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		// One warning per outage; the retries while it lasts are debug.
		if answered || !warned {
			log.Warn(what+" stream ended, reconnecting", "err", err, "in", wait)
			warned = true
		} else {
			log.Debug(what+" stream still down, reconnecting", "err", err, "in", wait)
		}
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
