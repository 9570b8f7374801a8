package fleetkeys

import (
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// sendsSince reads every pool's sends past its cursor and returns them as
// a report's columns, within the limits the control plane holds reports
// to (the newest kept: a proxy that sent more in one report interval
// than a report carries loses its oldest hints). buf is reused.
func (c *Client) sendsSince(fleets map[string]picker.Fleet, buf []picker.Send, now int64) ([]picker.Send, []*fleetv1.PoolSends) {
	var out []*fleetv1.PoolSends
	sendsLeft, keysLeft := fleetv1.MaxSendsPerReport, fleetv1.MaxKeysPerReport
	for name, f := range fleets {
		cur := c.cursors[name]
		if cur.f != f {
			cur = cursor{f: f}
		}
		buf, cur.pos = f.SendsSince(cur.pos, buf[:0])
		c.cursors[name] = cur
		// Keep the newest sends that fit what is left of the report.
		from := len(buf)
		for from > 0 && sendsLeft > 0 {
			n := min(len(buf[from-1].Keys), fleetv1.MaxKeysPerSend)
			if n > keysLeft {
				break
			}
			from--
			sendsLeft--
			keysLeft -= n
		}
		if from > 0 {
			c.cfg.Logger.Warn("fleet exchange: more sends than a report carries; the oldest are not reported", "pool", name, "left out", from)
		}
		ps := &fleetv1.PoolSends{Pool: name}
		for _, s := range buf[from:] {
			if s.Prefilled {
				ps.AddPrefilled(fleetv1.Prefilled{Endpoint: s.Endpoint, Tokens: tokens(s.Prefill, fleetv1.MaxPrefillTokens),
					Age: time.Duration(now - s.At)})
				continue
			}
			// A chain longer than a send may carry keeps its deepest keys,
			// as the picker's own outbox does.
			if keys := s.Keys[max(0, len(s.Keys)-fleetv1.MaxKeysPerSend):]; len(keys) > 0 {
				ps.Add(fleetv1.Sent{Endpoint: s.Endpoint, Keys: keys, Prefill: tokens(s.Prefill, fleetv1.MaxPrefillTokens),
					Output: tokens(s.Output, fleetv1.MaxOutputTokens), Age: time.Duration(now - s.At)})
			}
		}
		if ps.Len() > 0 || ps.PrefilledLen() > 0 {
			out = append(out, ps)
			c.counts.add(name, ps.Len(), 0)
		}
	}
	for name := range c.cursors {
		if fleets[name] == nil {
			delete(c.cursors, name)
		}
	}
	clear(buf)
	return buf[:0], out
}

// counts are the sends and scrapes a proxy reported and merged per pool
// since it started, for its admin API.
type counts struct {
	mu    sync.Mutex
	pools map[string]*poolCounts
}

type poolCounts struct {
	sends PoolSends
	loads PoolLoads
}

// PoolLoads counts one pool's scrapes through the exchange.
type PoolLoads struct {
	// Reported are this proxy's own scrapes of the pool's endpoints it
	// reported (an endpoint in several pools counts in one); Adopted the
	// other proxies' scrapes it took over, newer than its own.
	Reported int64 `json:"reported"`
	Adopted  int64 `json:"adopted"`
}

// PoolSends counts one pool's sends through the exchange.
type PoolSends struct {
	// Reported are the sends this proxy made and reported; Merged the
	// other proxies' sends it received and handed its picker.
	Reported int64 `json:"reported"`
	Merged   int64 `json:"merged"`
}

func newCounts() counts { return counts{pools: map[string]*poolCounts{}} }

// poolLocked returns pool's counts, created when missing.
func (c *counts) poolLocked(pool string) *poolCounts {
	p := c.pools[pool]
	if p == nil {
		p = &poolCounts{}
		c.pools[pool] = p
	}
	return p
}

func (c *counts) add(pool string, reported, merged int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.poolLocked(pool)
	p.sends.Reported += int64(reported)
	p.sends.Merged += int64(merged)
}

func (c *counts) addLoads(pool string, reported, adopted int) {
	if reported == 0 && adopted == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.poolLocked(pool)
	p.loads.Reported += int64(reported)
	p.loads.Adopted += int64(adopted)
}

// snapshot returns a copy of the counts.
func (c *counts) snapshot() map[string]poolCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]poolCounts, len(c.pools))
	for k, v := range c.pools {
		out[k] = *v
	}
	return out
}

// tokens is a picker's token estimate as the exchange carries it: whole,
// within 0..limit (NaN as 0: Go's max passes a NaN through, and its
// conversion to an integer is not defined).
func tokens(v float64, limit uint32) uint32 {
	if !(v > 0) {
		return 0
	}
	return uint32(min(v, float64(limit)))
}
