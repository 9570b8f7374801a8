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
	s, _ := saturation(cands, now)
	return s
}

// saturation is Saturation, and whether any endpoint has fresh metrics.
func saturation(cands []*endpoints.Endpoint, now time.Time) (s float64, anyFresh bool) {
	if len(cands) == 0 {
		return 1, false
	}
	var sum float64
	for _, e := range cands {
		m, fresh := e.Fresh(now, e.StaleAfter())
		if !fresh {
			sum++
			continue
		}
		anyFresh = true
		sum += fullness(m.Waiting+e.Unseen(m, now), m)
	}
	return sum / float64(len(cands)), anyFresh
}

// fullness is one fresh endpoint's term of the saturation: 1 when its
// queue (with the requests sent since the scrape) or KV cache is full.
func fullness(queue float64, m *endpoints.Metrics) float64 {
	return max(queue/QueueThreshold, m.KVCacheUsage/KVThreshold)
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
		sum += fullness(cd.Queue, cd.Metrics)
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
	s, anyFresh := saturation(cands, now)
	if !anyFresh {
		return max(1, len(cands))
	}
	if s >= 1 {
		return 0
	}
	return max(1, int((1-s)*QueueThreshold*float64(len(cands))))
}
