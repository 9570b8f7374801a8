package picker

import (
	"errors"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// ErrShed means the pool is saturated and the request is sheddable (HTTP
// 429 with an OpenAI error body).
var ErrShed = errors.New("pool saturated: sheddable request shed")

// Saturation thresholds of the reference rule: a pod is full when its
// waiting queue reaches QueueThreshold or its KV cache KVThreshold.
const (
	QueueThreshold = 5
	KVThreshold    = 0.8
)

// Saturation is the pool's saturation: the mean over endpoints of
// max(waiting/QueueThreshold, kv/KVThreshold), where an endpoint without
// fresh metrics counts 1. The pool is saturated at ≥ 1. Waiting includes
// the requests this proxy sent since the last scrape.
func Saturation(cands []*endpoints.Endpoint, now time.Time) float64 {
	if len(cands) == 0 {
		return 1
	}
	var sum float64
	for _, e := range cands {
		m, fresh := e.Fresh(now, e.StaleAfter())
		if !fresh {
			sum++
			continue
		}
		q := (m.Waiting + e.Unseen()) / QueueThreshold
		sum += max(q, m.KVCacheUsage/KVThreshold)
	}
	return sum / float64(len(cands))
}

func (c *Cycle) saturation() float64 {
	if len(c.Candidates) == 0 {
		return 1
	}
	var sum float64
	for i := range c.Candidates {
		cd := &c.Candidates[i]
		if !cd.Fresh {
			sum++
			continue
		}
		sum += max(cd.Queue/QueueThreshold, cd.Metrics.KVCacheUsage/KVThreshold)
	}
	return sum / float64(len(c.Candidates))
}

// Shed reports whether a request of the given priority is refused at the
// given saturation: only sheddable requests (priority < 0), only when
// saturated. Critical (> 0) and Standard (0) requests are never shed.
func Shed(priority int32, saturation float64) bool {
	return priority < 0 && saturation >= 1
}

// Headroom is how many more requests the pool takes before it is
// saturated, for a wait queue deciding how many waiting requests to send:
// 0 when saturated, else the requests that would bring the queue term of
// the mean to 1 if spread evenly (at least 1). It errs low for pools full
// by KV cache rather than queue, where one more request can still fit.
//
// Without evidence of load it does not hold requests back: with no
// endpoint (the picker answers 503 at once) or no endpoint with fresh
// metrics (scraping broken: waiting for metrics that may never come would
// turn every request into a timeout) it returns at least 1.
func Headroom(cands []*endpoints.Endpoint, now time.Time) int {
	anyFresh := false
	for _, e := range cands {
		if _, ok := e.Fresh(now, e.StaleAfter()); ok {
			anyFresh = true
			break
		}
	}
	if !anyFresh {
		return max(1, len(cands))
	}
	s := Saturation(cands, now)
	if s >= 1 {
		return 0
	}
	return max(1, int((1-s)*QueueThreshold*float64(len(cands))))
}
