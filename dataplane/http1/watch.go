package http1

import (
	"sync"
	"time"
)

// watcher starts the disconnect watch of the requests that have run for
// WatchAfter (see conn.onWatch). One timer serves the whole server: a
// timer armed and stopped per request costs little CPU, but arming it
// wakes a thread for the netpoller on a process that was idle — on the
// path of every request, where nearly all end long before their watch
// would start. Here a request joins a list ordered by start and leaves it
// when it ends; the timer is armed only when the list was empty, and
// when it fires it starts the watch of the requests due and rearms for
// the oldest one left.
type watcher struct {
	after time.Duration

	mu         sync.Mutex
	head, tail *conn // connections with a request in flight, oldest first
	timer      *time.Timer
	armed      bool // the timer will fire
}

// watchEntry is a connection's place in the watcher's list; the zero
// value is off the list.
type watchEntry struct {
	prev, next *conn
	w          *response // the request in flight; nil: not listed
	start      time.Time
}

// add lists c's request w (not nil).
func (wt *watcher) add(c *conn, w *response) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	e := &c.we
	if e.w != nil {
		wt.unlinkLocked(c)
	}
	*e = watchEntry{prev: wt.tail, w: w, start: time.Now()}
	if wt.tail != nil {
		wt.tail.we.next = c
	} else {
		wt.head = c
	}
	wt.tail = c
	if wt.armed {
		return // for an older request: it fires before c's is due
	}
	wt.armed = true
	if wt.timer == nil {
		wt.timer = time.AfterFunc(wt.after, wt.fire)
	} else {
		wt.timer.Reset(wt.after)
	}
}

// remove takes c's request off the list (if it is on it).
func (wt *watcher) remove(c *conn) {
	wt.mu.Lock()
	if c.we.w != nil {
		wt.unlinkLocked(c)
	}
	wt.mu.Unlock()
}

func (wt *watcher) unlinkLocked(c *conn) {
	e := &c.we
	if e.prev != nil {
		e.prev.we.next = e.next
	} else {
		wt.head = e.next
	}
	if e.next != nil {
		e.next.we.prev = e.prev
	} else {
		wt.tail = e.prev
	}
	*e = watchEntry{}
}

// fire starts the watch of the requests due and rearms for the next.
func (wt *watcher) fire() {
	type due struct {
		c *conn
		w *response
	}
	var (
		buf  [16]due
		list = buf[:0]
	)
	wt.mu.Lock()
	now := time.Now()
	wt.armed = false
	for c := wt.head; c != nil; c = wt.head {
		age := now.Sub(c.we.start)
		if age < wt.after {
			wt.armed = true
			wt.timer.Reset(wt.after - age)
			break
		}
		list = append(list, due{c, c.we.w})
		wt.unlinkLocked(c)
	}
	wt.mu.Unlock()
	for _, d := range list {
		d.c.onWatch(d.w)
	}
}
