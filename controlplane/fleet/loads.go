package fleet

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// loadTable holds a gateway's recent relayed scrapes for its streams to
// read past their cursors: each scrape accepted gets the next sequence
// number, and a stream reads those after its cursor that its own proxy
// did not take. Only the newest scrape of an endpoint matters (a proxy
// takes a relayed scrape only when it is newer than the one it holds), so
// a scrape older than the endpoint's newest is refused, and a read skips
// the superseded ones. Scrapes are forgotten loadAge after they were
// taken, and the log holds at most maxLoadLog of them.
type loadTable struct {
	mu sync.Mutex
	// log[head:] are the held scrapes in sequence order; log[head+i] has
	// sequence number first+i. newest maps each endpoint to its newest
	// scrape's taken time and sequence number.
	log    []loadEntry
	head   int
	first  uint64
	next   uint64
	newest map[uint64]loadNewest
}

type loadEntry struct {
	// load is the report's message (never written); taken is when the
	// scrape was taken (unix ns, the control plane's clock); origin the
	// proxy that took it.
	load   *fleetv1.EndpointLoad
	taken  int64
	origin string
}

type loadNewest struct {
	taken int64
	seq   uint64
}

const (
	// maxLoadLog bounds the scrapes a gateway's log holds (1 MiB or so):
	// 64 endpoints scraped every 50 ms fill 2,560 in loadAge. A proxy
	// reporting made-up endpoints pushes out older scrapes, no more.
	maxLoadLog = 1 << 14
	// loadAge is how long a scrape is held: proxies decide on metrics
	// under a second old.
	loadAge = 2 * time.Second
)

func newLoadTable() *loadTable {
	return &loadTable{first: 1, next: 1, newest: map[uint64]loadNewest{}}
}

// add takes the scrapes of one report of origin, received at now, that
// are newer than the held ones of their endpoints, and returns how many
// it took.
func (t *loadTable) add(now int64, origin string, ls []*fleetv1.EndpointLoad) int {
	if len(ls) == 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range ls {
		taken := now - int64(time.Duration(l.GetAgeMs())*time.Millisecond)
		if e, ok := t.newest[l.GetEndpoint()]; ok && taken <= e.taken {
			continue
		}
		t.newest[l.GetEndpoint()] = loadNewest{taken: taken, seq: t.next}
		t.log = append(t.log, loadEntry{load: l, taken: taken, origin: origin})
		t.next++
		n++
	}
	t.trimLocked(now)
	return n
}

// trimLocked drops the scrapes beyond maxLoadLog or older than loadAge,
// oldest first, and compacts the log once most of it is dropped.
func (t *loadTable) trimLocked(now int64) {
	for t.head < len(t.log) {
		e := &t.log[t.head]
		if len(t.log)-t.head <= maxLoadLog && now-e.taken <= int64(loadAge) {
			break
		}
		if nw := t.newest[e.load.GetEndpoint()]; nw.seq == t.first {
			delete(t.newest, e.load.GetEndpoint())
		}
		*e = loadEntry{}
		t.head++
		t.first++
	}
	t.log, t.head = compactHead(t.log, t.head)
}

// start is the cursor of a new stream: past every scrape held (the
// newest of each endpoint is what a starting proxy needs).
func (t *loadTable) start() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first - 1
}

// read appends to out the newest scrapes of their endpoints accepted after
// cursor that node did not take, with their ages as of now, and returns
// the next cursor.
func (t *loadTable) read(now int64, cursor uint64, node string, out []*fleetv1.EndpointLoad) ([]*fleetv1.EndpointLoad, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trimLocked(now)
	for s := max(cursor+1, t.first); s < t.next; s++ {
		e := &t.log[t.head+int(s-t.first)]
		if e.origin == node || t.newest[e.load.GetEndpoint()].seq != s {
			continue
		}
		l := proto.CloneOf(e.load)
		l.AgeMs = uint32(max(now-e.taken, 0) / int64(time.Millisecond))
		out = append(out, l)
	}
	return out, t.next - 1
}

// size is the number of scrapes held.
func (t *loadTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.log) - t.head
}
