package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

// simProxy is one simulated proxy: the proxy's delta xDS client, scoped to
// its Gateway, keeping the last complete state and waking whoever waits
// for a state to hold. The client ACKs a state right after update returns,
// so the time a waiter is woken is the time the proxy ACKed.
type simProxy struct {
	gateway string
	client  *xdsclient.Client

	mu      sync.Mutex
	state   snapshotv1.Resources
	waiters []*waiter
}

type waiter struct {
	holds func(snapshotv1.Resources) bool
	at    chan time.Time // buffered 1
}

func (p *simProxy) update(r xdsclient.Resources) error {
	if _, ok := r.Complete(); !ok {
		return nil
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = r
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.holds(r) {
			w.at <- now
		} else {
			kept = append(kept, w)
		}
	}
	p.waiters = kept
	return nil
}

// await returns a channel that receives the time the proxy first holds a
// complete state for which holds is true (now, if it already does).
func (p *simProxy) await(holds func(snapshotv1.Resources) bool) <-chan time.Time {
	w := &waiter{holds: holds, at: make(chan time.Time, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != nil && holds(p.state) {
		w.at <- time.Now()
		return w.at
	}
	p.waiters = append(p.waiters, w)
	return w.at
}

// bytes is what the proxy received so far: all types, and of them the
// Manifests.
func (p *simProxy) bytes() (all, manifest uint64) {
	for _, t := range p.client.Status() {
		all += t.ReceivedBytes
		if t.TypeURL == snapshotv1.TypeManifest {
			manifest += t.ReceivedBytes
		}
	}
	return all, manifest
}

// fleet is every simulated proxy, by Gateway.
type fleet struct {
	all       []*simProxy
	byGateway map[string][]*simProxy
	wg        sync.WaitGroup
}

func startFleet(ctx context.Context, w *world, xdsAddr string) *fleet {
	f := &fleet{byGateway: map[string][]*simProxy{}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for g := range w.cfg.gateways {
		for i := range w.cfg.proxiesPerGateway {
			p := &simProxy{gateway: w.gateway(g)}
			p.client = xdsclient.New(xdsclient.Config{
				Addr: xdsAddr, NodeID: fmt.Sprintf("sim-%s-%d", w.ns(g), i), Gateway: p.gateway,
				Pod: fmt.Sprintf("%s/gw-proxy-%d", w.ns(g), i), Handler: xdsclient.HandlerFunc(p.update), Logger: quiet,
			})
			f.all = append(f.all, p)
			f.byGateway[p.gateway] = append(f.byGateway[p.gateway], p)
			f.wg.Go(func() { _ = p.client.Run(ctx) })
		}
	}
	return f
}

// until waits until every proxy in ps holds a state for which holds is
// true and returns when the last one did.
func until(ctx context.Context, ps []*simProxy, timeout time.Duration, holds func(snapshotv1.Resources) bool) (time.Time, error) {
	chans := make([]<-chan time.Time, len(ps))
	for i, p := range ps {
		chans[i] = p.await(holds)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last time.Time
	for i, ch := range chans {
		select {
		case t := <-ch:
			if t.After(last) {
				last = t
			}
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("proxy %d of %s did not converge within %v", i, ps[i].gateway, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	return last, nil
}

// counts is what a complete state holds: routes and endpoints.
func counts(r snapshotv1.Resources) (routes, endpoints int) {
	for _, e := range r[snapshotv1.TypeEndpoints] {
		endpoints += len(e.Message.(*snapshotv1.Endpoints).GetEndpoints())
	}
	return len(r[snapshotv1.TypeRoute]), endpoints
}

// hasEndpoint reports whether the Endpoints resource name lists address.
func hasEndpoint(r snapshotv1.Resources, name, address string) bool {
	e, ok := r[snapshotv1.TypeEndpoints][name]
	if !ok {
		return false
	}
	for _, ep := range e.Message.(*snapshotv1.Endpoints).GetEndpoints() {
		if ep.GetAddress() == address {
			return true
		}
	}
	return false
}

// routeHeader is the value the x-bench header filter of a Route sets.
func routeHeader(r snapshotv1.Resources, name string) string {
	rt, ok := r[snapshotv1.TypeRoute][name]
	if !ok {
		return ""
	}
	for _, f := range rt.Message.(*snapshotv1.Route).GetFilters() {
		for _, h := range f.GetRequestHeaderModifier().GetSet() {
			if h.GetName() == benchHeader {
				return h.GetValue()
			}
		}
	}
	return ""
}

// queueWeight is the queue scorer weight of a Backend's picker profile.
func queueWeight(r snapshotv1.Resources, name string) float64 {
	b, ok := r[snapshotv1.TypeBackend][name]
	if !ok {
		return -1
	}
	for _, s := range b.Message.(*snapshotv1.Backend).GetPicker().GetScorers() {
		if s.GetName() == "queue" {
			return s.GetWeight()
		}
	}
	return -1
}
