package picker

// ownLoad is how the cost model counts this proxy's own load on each
// candidate that no scrape shows yet: the requests it sent since the
// latest scrape, those it has open (without metrics) and the prefill it
// queued there (the backlog).
//
// Normally each candidate's own counts. With several proxies and no
// other proxy's sends arriving through the fleet exchange, the proxy is
// blind to N−1 of every N requests, and its own share of a burst differs
// from replica to replica by chance: balanced over its own sends, each
// proxy moves a prompt group off the home the plan gives it to a replica
// where that proxy, but not the fleet, sent less — and every proxy to a
// different one. In routesim's saturated shared prefixes on 4 proxies
// (192 requests at once, no exchange yet) a prompt group landed on 2.5
// replicas against 1.1 with one proxy, and the extra copies crowded the
// KV caches for the next minute (with the even counts below: 1.3–1.5
// replicas, TTFT p90 18.7 → 14.9 s against one proxy's 12.2 s, 15 seeds).
// So for a prompt with planned homes (the plan is what the proxies
// share) a blind proxy counts on every candidate the mean of its own
// unseen load: its share of the fleet's,
// without the chance in where it fell. Scraped load, which every proxy
// sees, still counts as it is; once the exchange brings the others'
// sends, or for prompts with no plan, the own counts are exact. So they
// are where the pool's KV-cache events say what each replica holds
// (precise matching): a proxy's own sends are then not taken for copies,
// and evening them sent groups to the plan's homes, which cap prefixes
// per replica but not their requests (routesim, saturated shared
// prefixes, 4 proxies, 8 seeds: TTFT p90 12.7 s with exact counts, 16.7 s
// with even ones).
type ownLoad struct {
	// exchange: some candidate got another proxy's send within the
	// stale-metrics bound (OthersLive), so the fleet exchange is bringing
	// the others' sends (see look).
	exchange bool
	// even: count the means below instead of each candidate's own.
	even bool
	// since, open and queued: the means over the candidates of the
	// requests sent since the scrape, the requests open and the backlog
	// (prefill tokens).
	since, open, queued float64
}

// look notes whether the fleet exchange brings other proxies' sends to
// this pick's candidates. It is a property of the exchange, not of one
// endpoint: an endpoint the others have not sent to lately has no recent
// send of theirs to show, and judged alone it looked unreached, so each
// own send there counted as a copy per proxy on top of the others' real
// sends when they came (a traced wall-clock run, shared prefixes on 4
// proxies: 313 of 513 sends counted 4 times, and prefixes were believed
// evicted from replicas that still held them and sent elsewhere cold;
// routesim, 8 seeds, 4 proxies against 1, TTFT p90: 1.11× → 0.94×).
func (o *ownLoad) look(c *Cycle) {
	o.exchange = false
	if len(c.Candidates) == 0 || c.Candidates[0].Endpoint.Proxies() <= 1 {
		return
	}
	for i := range c.Candidates {
		if c.Candidates[i].Endpoint.OthersLive(c.Now) {
			o.exchange = true
			return
		}
	}
}

// blind reports whether this proxy sees no other proxy's sends to any
// candidate while there are others (look first), and if so sets the
// means (rate: prefill tokens per second, as for Backlog).
func (o *ownLoad) blind(c *Cycle, tokenSeconds float64) bool {
	n := len(c.Candidates)
	if n == 0 || c.Candidates[0].Endpoint.Proxies() <= 1 || o.exchange {
		return false
	}
	o.since, o.open, o.queued = 0, 0, 0
	now, rate := c.Now.UnixNano(), 1/tokenSeconds
	for i := range c.Candidates {
		e := c.Candidates[i].Endpoint
		o.since += float64(e.SinceScrape())
		o.open += float64(e.InFlight())
		o.queued += e.Backlog(now, rate)
	}
	o.since, o.open, o.queued = o.since/float64(n), o.open/float64(n), o.queued/float64(n)
	return true
}

// unseen is the requests sent to cd since its scrape, given the estimate
// that counts this proxy's own exactly.
func (o *ownLoad) unseen(cd *Candidate, exact float64) float64 {
	if !o.even {
		return exact
	}
	return max(exact-float64(cd.Endpoint.SinceScrape())+o.since, 0)
}

// inFlight is this proxy's open requests on cd.
func (o *ownLoad) inFlight(cd *Candidate) float64 {
	if o.even {
		return o.open
	}
	return float64(cd.Endpoint.InFlight())
}

// backlog is the prefill tokens this proxy queued on cd and believes not
// done yet (rate: prefill tokens per second).
func (o *ownLoad) backlog(c *Cycle, cd *Candidate, rate float64) float64 {
	if o.even {
		return o.queued
	}
	return cd.Endpoint.Backlog(c.Now.UnixNano(), rate)
}
