package harness

import (
	"context"
	"sync"
	"sync/atomic"
)

// Load keeps workers sending requests until stopped, counting successes and
// failures: the tool for "no request fails while X happens".
type Load struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ok       atomic.Int64
	failed   atomic.Int64
	firstErr atomic.Value
}

// StartLoad runs send in a loop on each of workers goroutines (worker index
// passed in) until Stop.
func StartLoad(ctx context.Context, workers int, send func(worker int) error) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				if err := send(w); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err)
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

// OK is the number of successful requests so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Stop ends the load, waits for in-flight requests and returns the counts
// and the first error seen.
func (l *Load) Stop() (ok, failed int64, firstErr error) {
	l.cancel()
	l.wg.Wait()
	err, _ := l.firstErr.Load().(error)
	return l.ok.Load(), l.failed.Load(), err
}
