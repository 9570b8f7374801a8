package fleetkeys

import (
	"fmt"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// loadsSince returns, as a report's scrapes, this proxy's own scrapes of
// the pools' endpoints taken after the ones it reported before (each
// endpoint once, whatever the number of pools naming it), at most
// fleetv1.MaxLoadsPerReport. Only the report goroutine calls it.
func (c *Client) loadsSince(fleets map[string]picker.Fleet, now time.Time) []*fleetv1.EndpointLoad {
	var out []*fleetv1.EndpointLoad
	for name, f := range fleets {
		c.loadBuf = picker.NewerLoads(f.Loads(c.loadBuf[:0]), c.reported)
		n := 0
		for _, l := range c.loadBuf {
			if len(out) == fleetv1.MaxLoadsPerReport {
				break
			}
			if m := loadMessage(l, now); m != nil {
				out = append(out, m)
				n++
			}
		}
		c.counts.addLoads(name, n, 0)
	}
	clear(c.loadBuf)
	return out
}

// loadMessage is l as the exchange carries it, nil when it is outside the
// exchange's limits: the scrape parser bounds the counts and adapter lists
// the same way, so that is a scrape older than fleetv1.MaxLoadAge or one
// naming an adapter longer than fleetv1.MaxAdapterNameBytes (the other
// proxies then decide on their own scrapes of that endpoint).
func loadMessage(l picker.Load, now time.Time) *fleetv1.EndpointLoad {
	m := l.Metrics
	age := max(now.Sub(m.At), 0)
	out := &fleetv1.EndpointLoad{Endpoint: l.Endpoint, Waiting: m.Waiting, Running: m.Running, KvCacheUsage: m.KVCacheUsage,
		KvCapacityTokens: m.KVCapacity, MaxLora: uint32(max(m.MaxLoRA, 0)), RunningAdapters: m.RunningAdapters,
		WaitingAdapters: m.WaitingAdapters, AgeMs: uint32(min(age, fleetv1.MaxLoadAge+time.Millisecond) / time.Millisecond)}
	if out.Check() != nil {
		return nil
	}
	return out
}

// mergeLoads hands every pool's picker the other proxies' scrapes of a
// push, received at now. A scrape outside the exchange's limits (the
// control plane refuses reports with one, so only a faulty control plane
// sends it) is dropped, counted and logged once per push; the others are
// taken.
func (c *Client) mergeLoads(ls []*fleetv1.EndpointLoad, now time.Time) {
	loads := make([]picker.Load, 0, len(ls))
	var bad error
	for _, l := range ls {
		if err := l.Check(); err != nil {
			c.badLoads.Add(1)
			bad = fmt.Errorf("endpoint %016x: %w", l.GetEndpoint(), err)
			continue
		}
		loads = append(loads, picker.Load{Endpoint: l.GetEndpoint(), Metrics: &endpoints.Metrics{
			Waiting: l.GetWaiting(), Running: l.GetRunning(), KVCacheUsage: l.GetKvCacheUsage(),
			KVCapacity: l.GetKvCapacityTokens(), MaxLoRA: int(l.GetMaxLora()),
			RunningAdapters: l.GetRunningAdapters(), WaitingAdapters: l.GetWaitingAdapters(),
			At: now.Add(-time.Duration(l.GetAgeMs()) * time.Millisecond)}})
	}
	if bad != nil {
		c.cfg.Logger.Warn("fleet exchange: dropped malformed scrapes the control plane relayed", "dropped", len(ls)-len(loads), "last", bad)
	}
	for name, f := range c.cfg.Pools.Fleets() {
		c.counts.addLoads(name, 0, f.MergeLoads(loads))
	}
}

// forgetReported drops the endpoints whose last reported scrape is older
// than any the exchange carries (endpoints gone from the pools, or no
// longer scraped), so the map does not grow with every endpoint ever seen.
func (c *Client) forgetReported(now time.Time) {
	old := now.Add(-fleetv1.MaxLoadAge).UnixNano()
	for ep, at := range c.reported {
		if at < old {
			delete(c.reported, ep)
		}
	}
}
