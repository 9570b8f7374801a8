// Package leader runs Lease-based leader election among control-plane
// replicas. Every replica serves xDS; only the leader writes status.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Options configure an election. Zero durations take client-go's usual
// values (15s lease, 10s renew deadline, 2s retry).
type Options struct {
	Namespace string
	Name      string
	// Identity defaults to "<hostname>_<random>".
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	Logger        *slog.Logger
}

// Run campaigns for the Lease until ctx is done. While this replica leads,
// lead runs with a context cancelled when leadership is lost; Run then
// campaigns again. On ctx cancellation a held Lease is released
// (ReleaseOnCancel), so another replica takes over after one retry period
// instead of a full lease duration. Run returns once lead has returned.
func Run(ctx context.Context, client kubernetes.Interface, opts Options, lead func(ctx context.Context)) error {
	if opts.Identity == "" {
		host, _ := os.Hostname()
		opts.Identity = fmt.Sprintf("%s_%s", host, uuid.NewUUID())
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("lease", opts.Namespace+"/"+opts.Name, "identity", opts.Identity)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	// terms carries, per leadership term, a channel closed when lead has
	// returned.
	terms := make(chan chan struct{}, 1)
	var leading atomic.Bool
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            opts.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				leading.Store(true)
				log.Info("became leader; writing status")
				finished := make(chan struct{})
				terms <- finished
				defer close(finished)
				lead(ctx)
			},
			OnStoppedLeading: func() {
				// client-go calls this whenever Run returns, also for a
				// replica that never led.
				if leading.Swap(false) {
					log.Info("not leading any more; status writes stopped")
				}
			},
			OnNewLeader: func(id string) {
				if id != opts.Identity {
					log.Info("another replica leads; not writing status", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	for ctx.Err() == nil {
		elector.Run(ctx)
		// lead's context is cancelled by now; wait (briefly) for it to
		// return so a term's writes do not overlap the next term's. The
		// Lease may already be released, so a last in-flight write can
		// overlap the next leader's: writes use resourceVersions, so the
		// later one merges rather than clobbers.
		select {
		case finished := <-terms:
			select {
			case <-finished:
			case <-time.After(opts.RenewDeadline):
			}
		default:
		}
	}
	return nil
}
