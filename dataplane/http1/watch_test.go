package http1

import (
	"testing"
	"time"
)

// watched reports whether the watch of c's request started (its body is
// unread, so onWatch only marks it).
func watched(c *conn) bool {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	return c.r.wantBG
}

// inFlight lists a request on c with wt, as startWatch does.
func inFlight(wt *watcher, c *conn) time.Time {
	w := &response{}
	c.r.mu.Lock()
	c.r.cur, c.r.bodyDone, c.r.wantBG = w, false, false
	c.r.mu.Unlock()
	start := time.Now()
	wt.add(c, w)
	return start
}

// TestWatcherStartsEachWatchAfterItsOwnRequestRan checks the one timer
// against requests that start at different times, some ending first: each
// request's watch starts once it has run for WatchAfter — never before,
// even when the timer fires for an earlier request — and requests that
// ended are never watched.
func TestWatcherStartsEachWatchAfterItsOwnRequestRan(t *testing.T) {
	const after = 40 * time.Millisecond
	wt := &watcher{after: after}
	conns := make([]*conn, 4)
	for i := range conns {
		conns[i] = &conn{}
	}
	a, b, c, d := conns[0], conns[1], conns[2], conns[3]
	startA := inFlight(wt, a)
	startB := inFlight(wt, b)
	time.Sleep(after / 2)
	wt.remove(b)              // b ended: a's timer stays armed
	startC := inFlight(wt, c) // due after a
	wt.remove(a)              // a ended too: the timer fires for nobody
	startD := inFlight(wt, d) // d was added while the timer was armed
	starts := map[*conn]time.Time{c: startC, d: startD}
	_, _ = startA, startB

	deadline := time.Now().Add(5 * time.Second)
	for !(watched(c) && watched(d)) {
		for x, start := range starts {
			// Checked before the time is read: if the read comes before
			// the request is due, the watch must not have started.
			w := watched(x)
			if now := time.Now(); w && now.Sub(start) < after {
				t.Fatalf("watch started %v after the request, before WatchAfter (%v)", now.Sub(start), after)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("watches not started within 5s: c %v, d %v", watched(c), watched(d))
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * after)
	if watched(a) || watched(b) {
		t.Errorf("requests that ended were watched: a %v, b %v", watched(a), watched(b))
	}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.head != nil || wt.tail != nil || wt.armed {
		t.Errorf("watcher not idle after every request was watched or ended: head %p tail %p armed %v", wt.head, wt.tail, wt.armed)
	}
}

// A connection whose request ended and whose next one started before the
// timer fired is watched for the new request, from its own start.
func TestWatcherFollowsTheConnectionsCurrentRequest(t *testing.T) {
	const after = 30 * time.Millisecond
	wt := &watcher{after: after}
	c := &conn{}
	inFlight(wt, c)
	time.Sleep(after / 2)
	wt.remove(c)
	start := inFlight(wt, c)
	for !watched(c) {
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(start); d < after {
		t.Fatalf("the next request was watched %v after it started, before WatchAfter (%v)", d, after)
	}
}
