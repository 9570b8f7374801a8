package endpoints

import "sync/atomic"

// Scrapes relayed between proxies. Each of a gateway's N proxies scrapes
// an endpoint every N × the base interval, so that the model server sees
// one proxy's scrape load whatever N is; alone, each proxy would then
// decide on metrics N times older than a single proxy does. The fleet
// exchange brings every proxy the others' scrapes (5–10 ms late), and
// Adopt takes a relayed one over when it is newer than the one held.

// Adopt takes over m, another proxy's scrape of the endpoint brought by
// the fleet exchange, when it was taken after the metrics held (m.At, in
// this proxy's clock); it reports whether it did. The requests sent since
// m was taken — this proxy's own (Acquire) and the others' the exchange
// brought (NoteOthersSend) — count as unseen by it again (Unseen). A
// relayed scrape says nothing of this proxy's own requests finishing, so
// the completion and send rates stay on this proxy's own scrapes. m's
// fields other than the gauges (KV capacity, LoRA slots) fall back to the
// held metrics' when m leaves them zero.
func (e *Endpoint) Adopt(m *Metrics) bool {
	cur := e.metrics.Load()
	if cur != nil && !m.At.After(cur.At) {
		return false
	}
	m.Relayed = true
	if cur != nil {
		if m.KVCapacity == 0 {
			m.KVCapacity = cur.KVCapacity
		}
		if m.MaxLoRA == 0 {
			m.MaxLoRA = cur.MaxLoRA
		}
	}
	e.take(m)
	// A concurrent own scrape may land between the check and the store;
	// it is at most one scrape interval older than it should be, then
	// replaced by the next. The scraper of this endpoint and the exchange
	// are the only writers.
	at := m.At.UnixNano()
	e.metrics.Store(m)
	e.sinceScrape.Store(e.ownTimes.after(at))
	e.othersSince.Store(e.othersTimes.after(at))
	return true
}

// sendTimesLen is how many sends a sendTimes remembers: a relayed scrape
// is at most a few tens of milliseconds old, and more sends than this to
// one endpoint within that time count as this many.
const sendTimesLen = 64

// sendTimes remembers when the latest sends were made (unix ns), lock-free:
// writers take the next slot, readers count the slots after a time.
type sendTimes struct {
	next  atomic.Uint64
	times [sendTimesLen]atomic.Int64
}

func (t *sendTimes) add(at int64) {
	i := t.next.Add(1) - 1
	t.times[i%sendTimesLen].Store(at)
}

// after counts the remembered sends made after at.
func (t *sendTimes) after(at int64) int64 {
	var n int64
	for i := range t.times {
		if v := t.times[i].Load(); v != 0 && v > at {
			n++
		}
	}
	return n
}
