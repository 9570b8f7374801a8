package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// upstreamTimeout is why a watchdog ended an attempt.
type upstreamTimeout struct {
	what string // "first byte" or "stream idle"
	d    time.Duration
}

func (e *upstreamTimeout) Error() string {
	if e.what == "first byte" {
		return fmt.Sprintf("no response within %v (first-byte timeout)", e.d)
	}
	return fmt.Sprintf("nothing sent for %v (stream idle timeout)", e.d)
}

// Timeout marks it as a timeout (upstream.IsTimeout and net.Error alike).
func (e *upstreamTimeout) Timeout() bool { return true }

// watchdog ends an attempt whose endpoint stops answering: no response
// head within firstByte (0: not bounded here), or nothing new — head or
// body bytes — for idle (0: not bounded) once it started. One timer per
// attempt, rearmed when the response head arrives and when it fires
// early: the request path merely stores the time of each write (touch).
type watchdog struct {
	firstByte, idle time.Duration
	start           int64        // unix ns
	started         atomic.Bool  // the response head came
	last            atomic.Int64 // unix ns of the latest head or body write
	fired           atomic.Pointer[upstreamTimeout]
	cancel          context.CancelCauseFunc
	t               *time.Timer
}

// watch starts a watchdog over the attempt whose context cancel ends.
// Either bound may be 0; nil when both are.
func watch(firstByte, idle time.Duration, cancel context.CancelCauseFunc) *watchdog {
	if firstByte <= 0 && idle <= 0 {
		return nil
	}
	w := &watchdog{firstByte: firstByte, idle: idle, cancel: cancel, start: time.Now().UnixNano()}
	first := firstByte
	if first <= 0 {
		first = idle // before the head only the idle bound rearms
	}
	w.t = time.AfterFunc(first, w.check)
	return w
}

// touch notes that the endpoint sent something (head is true for the
// response head).
func (w *watchdog) touch(head bool) {
	w.last.Store(time.Now().UnixNano())
	if head && !w.started.Swap(true) {
		// From now on the idle bound applies: the timer was armed for
		// the first-byte one, which may be much longer.
		if w.idle > 0 {
			w.t.Reset(w.idle)
		} else {
			w.t.Stop()
		}
	}
}

// check runs when the timer fires: it ends the attempt if a bound passed,
// else rearms for when the next one would.
func (w *watchdog) check() {
	now := time.Now().UnixNano()
	var due int64
	var why *upstreamTimeout
	switch {
	case !w.started.Load() && w.firstByte > 0:
		due, why = w.start+int64(w.firstByte), &upstreamTimeout{"first byte", w.firstByte}
	case !w.started.Load():
		w.t.Reset(w.idle) // waiting for the head is not bounded here
		return
	case w.idle > 0:
		due, why = w.last.Load()+int64(w.idle), &upstreamTimeout{"stream idle", w.idle}
	default:
		return // started, and no idle bound
	}
	if now < due {
		w.t.Reset(time.Duration(due - now))
		return
	}
	w.fired.Store(why)
	w.cancel(why)
}

// stop ends the watch; it returns why the watchdog ended the attempt, nil
// if it did not.
func (w *watchdog) stop() *upstreamTimeout {
	w.t.Stop()
	return w.fired.Load()
}
