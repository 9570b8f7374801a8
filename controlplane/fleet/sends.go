package fleet

import (
	"sync"
	"time"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// sendRing holds a gateway's recent sends — the prompts its proxies sent
// where, as chain keys — for the gateway's streams to read past their
// cursors. Every send gets the next sequence number; the ring keeps the
// newest within a count, a key and an age bound and forgets the rest. A
// stream whose cursor fell behind the ring skips ahead: sends are hints,
// and a late one is worth less than the memory it would hold.
type sendRing struct {
	lim sendLimits

	mu sync.Mutex
	// entries[head:] are held, oldest first; entries[head+i] has sequence
	// number first+i. next is the number the next send gets (from 1).
	entries     []sendEntry
	head        int
	first, next uint64
	keys        int
}

// sendLimits bound a ring (see Options).
type sendLimits struct {
	sends, keys int
	age         int64 // ns
}

type sendEntry struct {
	at int64 // unix ns the control plane got it
	// origin is the proxy (node id) that made the send, pool its pool:
	// strings shared by the sends of one report.
	origin, pool string
	ep           uint64
	// keys is a window of the decoded report's keys, never written.
	keys []uint64
	// prefill and output are the send's prefill and expected output
	// tokens; age (ns) its age when the report arrived: a push adds the
	// time held since.
	prefill, output uint32
	age             int64
	// prefilled: not a send but a prefilled record (fleetv1.Prefilled:
	// prefill is its tokens; no keys).
	prefilled bool
}

func newSendRing(lim sendLimits) *sendRing {
	return &sendRing{lim: lim, first: 1, next: 1}
}

// add appends the sends of one report of origin, received at now, and
// returns how many it appended. The keys stay shared with ps.
func (r *sendRing) add(now int64, origin string, ps []*fleetv1.PoolSends) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range ps {
		pool := p.GetPool()
		for snd := range p.All() {
			if len(snd.Keys) == 0 {
				continue
			}
			r.entries = append(r.entries, sendEntry{at: now, origin: origin, pool: pool, ep: snd.Endpoint, keys: snd.Keys,
				prefill: snd.Prefill, output: snd.Output, age: int64(snd.Age)})
			r.keys += len(snd.Keys)
			r.next++
			n++
		}
		for d := range p.AllPrefilled() {
			r.entries = append(r.entries, sendEntry{at: now, origin: origin, pool: pool, ep: d.Endpoint, prefill: d.Tokens,
				age: int64(d.Age), prefilled: true})
			r.next++
			n++
		}
	}
	r.trimLocked(now)
	return n
}

// trimLocked drops the oldest sends beyond the bounds or older than the
// age bound, and compacts the slice once most of it is dropped.
func (r *sendRing) trimLocked(now int64) {
	for r.head < len(r.entries) {
		e := &r.entries[r.head]
		if len(r.entries)-r.head <= r.lim.sends && r.keys <= r.lim.keys && now-e.at <= r.lim.age {
			break
		}
		r.keys -= len(e.keys)
		*e = sendEntry{}
		r.head++
		r.first++
	}
	r.entries, r.head = compactHead(r.entries, r.head)
}

// compactHead moves s[head:] to the front of s once the dropped head is
// most of it (so a log trimmed from the front does not grow without
// bound), clearing what it vacates; it returns the slice and the new head.
func compactHead[T any](s []T, head int) ([]T, int) {
	if head == 0 || head < len(s)/2 {
		return s, head
	}
	n := copy(s, s[head:])
	clear(s[n:])
	return s[:n], 0
}

// expire drops sends older than the age bound; it reports whether the
// ring is empty.
func (r *sendRing) expire(now int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trimLocked(now)
	return r.head == len(r.entries)
}

// start is the cursor of a new stream: past every send held when it
// wants to catch up (the ring only holds recent ones), else past the
// newest, so it gets only sends made from now on.
func (r *sendRing) start(catchUp bool) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if catchUp {
		return r.first - 1
	}
	return r.next - 1
}

// size returns the sends and keys held.
func (r *sendRing) size() (sends, keys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries) - r.head, r.keys
}

// read appends to out the sends after cursor that node did not make,
// grouped by pool in the order of each pool's first send, at most budget
// keys (but at least one send). It returns the next cursor, how many sends
// the stream skipped because they were dropped before it read them
// (anyone's: the ring does not keep who made them), and whether sends
// are left for another read.
func (r *sendRing) read(now int64, cursor uint64, node string, budget int, out []*fleetv1.PoolSends) (_ []*fleetv1.PoolSends, next, skipped uint64, more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trimLocked(now)
	if cursor+1 < r.first {
		skipped = r.first - (cursor + 1)
		cursor = r.first - 1
	}
	byPool := map[string]*fleetv1.PoolSends{}
	for s := cursor + 1; s < r.next; s++ {
		e := &r.entries[r.head+int(s-r.first)]
		if e.origin == node {
			cursor = s
			continue
		}
		if budget < len(e.keys) && len(out) > 0 {
			return out, cursor, skipped, true
		}
		budget -= len(e.keys)
		p := byPool[e.pool]
		if p == nil {
			p = &fleetv1.PoolSends{Pool: e.pool}
			byPool[e.pool] = p
			out = append(out, p)
		}
		if e.prefilled {
			p.AddPrefilled(fleetv1.Prefilled{Endpoint: e.ep, Tokens: e.prefill, Age: time.Duration(e.age + now - e.at)})
		} else {
			p.Add(fleetv1.Sent{Endpoint: e.ep, Keys: e.keys, Prefill: e.prefill, Output: e.output, Age: time.Duration(e.age + now - e.at)})
		}
		cursor = s
	}
	return out, cursor, skipped, false
}

// maxKeysPerPush bounds the keys of sends in one push (2 MiB, well under
// gRPC's default 4 MiB a proxy accepts): more go out in further messages
// at once.
const maxKeysPerPush = 256 << 10

// streamState is what one proxy's stream has been sent.
type streamState struct {
	node string
	// takesSends: the proxy said it takes sends (and unchanged keys).
	takesSends bool
	// keys is the served version of the keys last sent, cursor the
	// sequence number of the last send read.
	keys, cursor uint64
	// keysAt is when keys went out; keysHeld is set while a newer
	// version waits for PushEvery since then.
	keysAt   time.Time
	keysHeld bool
	// loads are the gateway's scrapes, loadCursor the sequence number of
	// the last one read (only proxies that take sends get them).
	loads      *loadTable
	loadCursor uint64
}

// next builds the stream's next push for gateway gw (nil: nothing new for
// it) and says whether more sends wait for another message.
func (a *Aggregator) next(gw string, ring *sendRing, st *streamState) (*fleetv1.FleetKeys, bool) {
	set, v := a.Keys(gw)
	if !st.takesSends {
		if v == st.keys {
			return nil, false
		}
		st.keys = v
		return set, false
	}
	msg := &fleetv1.FleetKeys{}
	now := a.opts.Now()
	st.keysHeld = v != st.keys && now.Sub(st.keysAt) < a.opts.PushEvery
	if v != st.keys && !st.keysHeld {
		msg.Pools = set.GetPools()
		st.keys, st.keysAt = v, now
	} else {
		msg.KeysUnchanged = true
	}
	var skipped uint64
	var more bool
	msg.Sends, st.cursor, skipped, more = ring.read(now.UnixNano(), st.cursor, st.node, maxKeysPerPush, nil)
	if skipped > 0 {
		a.stats.skipped.Add(int64(skipped))
		a.stats.behind.Add(1)
	}
	if st.loads != nil {
		msg.Loads, st.loadCursor = st.loads.read(now.UnixNano(), st.loadCursor, st.node, nil)
		a.stats.loadsOut.Add(int64(len(msg.Loads)))
	}
	if msg.KeysUnchanged && len(msg.Sends) == 0 && len(msg.Loads) == 0 {
		return nil, false
	}
	for _, p := range msg.Sends {
		a.stats.sendsOut.Add(int64(p.Len() + p.PrefilledLen()))
	}
	return msg, more
}
