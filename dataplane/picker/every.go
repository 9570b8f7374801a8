package picker

import (
	"sync/atomic"
	"time"
)

// every lets one caller at a time do periodic work from the pick path
// (rebuilding a plan, publishing scores) without a lock or a goroutine:
// the first caller a period after the last claim wins it.
type every struct {
	last atomic.Int64 // unix ns of the last claim
}

// claim reports whether the caller at now (unix ns) does the work: at
// least period has passed since the last claim and no concurrent caller
// claimed it first.
func (e *every) claim(now int64, period time.Duration) bool {
	last := e.last.Load()
	return now-last >= int64(period) && e.last.CompareAndSwap(last, now)
}
