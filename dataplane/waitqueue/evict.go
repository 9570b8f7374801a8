package waitqueue

// makeRoom reports whether r fits in the queue, evicting what ranks below
// it to make room. Ranking, lowest first:
//
//   - a lower priority band before a higher one: an arrival evicts only
//     requests of strictly lower priority, never its equals or betters;
//   - within its own band, only a flow that would still hold more
//     requests than the arrival's flow after it joins: a heavy tenant
//     cannot fill the queue and lock a light one out;
//   - within a band, the flow holding the most requests, and of it the
//     newest request (which has waited least).
//
// When evicting everything eligible would not make room, nothing is
// evicted and r itself is refused: it is then the newest request of the
// lowest rank. Called with q.mu held.
func (q *Queue) makeRoom(r Request) bool {
	if r.Bytes > q.cfg.MaxBytes {
		return false
	}
	needN := q.n + 1 - q.cfg.MaxRequests
	needB := q.bytes + r.Bytes - q.cfg.MaxBytes
	if needN <= 0 && needB <= 0 {
		return true
	}
	var victims []*waiter
	taken := map[*flow]int{}
	for i := len(q.bands) - 1; i >= 0 && (needN > 0 || needB > 0); i-- {
		b := q.bands[i]
		if b.priority > r.Priority {
			break
		}
		// Within the arrival's band a flow is eligible while it holds
		// more than the arrival's flow will.
		floor := 0
		if b.priority == r.Priority {
			floor = 1
			if own := b.flows[r.Flow]; own != nil {
				floor += own.items.Len()
			}
		}
		for needN > 0 || needB > 0 {
			var heavy *flow
			most := floor
			for _, f := range b.ring {
				if left := f.items.Len() - taken[f]; left > most {
					heavy, most = f, left
				}
			}
			if heavy == nil {
				break
			}
			e := heavy.items.Back()
			for range taken[heavy] {
				e = e.Prev()
			}
			w := e.Value.(*waiter)
			taken[heavy]++
			victims = append(victims, w)
			needN--
			needB -= w.req.Bytes
		}
	}
	if needN > 0 || needB > 0 {
		return false
	}
	for _, w := range victims {
		q.end(w, Evicted)
	}
	return true
}
