package http1

import (
	"context"
	"sync"
)

// reqCtx is a request's context: done when the handler returns, the client
// goes away or a write to the client fails (cancel), like the
// context.WithCancel context net/http gives a request. It exists for its
// AfterFunc: a proxy hooks every request's cancellation to its upstream
// connection, and context.AfterFunc on a context.WithCancel context costs
// five allocations, a children map and two locks of the parent per
// request; here the first hook is kept in place and stopped with a flag.
//
// The parent is the connection's context, which holds values and is never
// done, so nothing needs to be propagated from it.
type reqCtx struct {
	context.Context

	mu   sync.Mutex
	done chan struct{} // made by the first Done; closed by cancel
	err  error
	// first is the first AfterFunc's f until it runs or is stopped;
	// firstUsed keeps the slot from being taken again (its stop function
	// would stop the wrong hook); later ones go to more.
	first     func()
	firstUsed bool
	more      []*afterHook
}

type afterHook struct{ f func() }

// closedChan is the Done channel of a context canceled before anyone
// asked for it; it is never written.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done implements context.Context.
func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

// Err implements context.Context.
func (c *reqCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel ends the context and starts the hooks (each in its own goroutine,
// as context.AfterFunc runs them).
func (c *reqCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	first, more := c.first, c.more
	c.first, c.more = nil, nil
	c.mu.Unlock()
	if first != nil {
		go first()
	}
	for _, h := range more {
		go h.f()
	}
}

// AfterFunc arranges for f to run in its own goroutine once the context
// is done, with context.AfterFunc's semantics (context.AfterFunc and the
// contexts derived from this one use it too); stop reports whether it
// kept f from running.
func (c *reqCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if !c.firstUsed {
		c.first, c.firstUsed = f, true
		return c.stopFirst
	}
	h := &afterHook{f: f}
	c.more = append(c.more, h)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, m := range c.more {
			if m == h {
				c.more = append(c.more[:i], c.more[i+1:]...)
				return true
			}
		}
		return false
	}
}

func (c *reqCtx) stopFirst() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	stopped := c.first != nil
	c.first = nil
	return stopped
}
