package picker

import (
	"sync"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// chainIndex is a proxy's memory of where it sent which prompt prefixes:
// chain key → the endpoints it last sent that prefix to, newest first,
// LRU-bounded. Sending a prefix to a model server leaves it in that
// server's prefix cache until evicted, so the deepest key an endpoint has
// for a prompt estimates how much of the prompt it holds.
//
// One lock covers a whole match or record (a prompt's dozens of keys)
// rather than one per key: the per-key locks of a synchronised cache were
// a quarter of a long prompt's pick. Entries are updated in place (a put
// is one lookup; evicted entries are reused).
type chainIndex struct {
	mu  sync.Mutex
	idx *chainTable
}

// chainEntry is the endpoints a prefix was sent to, newest first, each
// with the endpoint's Written count after the send: what was written
// there since says whether the prefix has been evicted.
type chainEntry [chainEntryEndpoints]sent

type sent struct {
	ep *endpoints.Endpoint
	at int64
}

// chainEntryEndpoints is how many endpoints one prefix remembers: a hot
// prefix served from more replicas than this is known from the others'
// deeper keys or from the homes of its traffic share.
const chainEntryEndpoints = 8

// DefaultChainIndexSize is the number of chain keys a proxy remembers per
// pool: about 7,000 prompts of 4k tokens (18 keys each), ~23 MB when full
// (a 128-byte entry, a 16-byte link and two to four 16-byte slots per key).
const DefaultChainIndexSize = 128 << 10

func newChainIndex(size int) *chainIndex {
	if size <= 0 {
		size = DefaultChainIndexSize
	}
	return &chainIndex{idx: newChainTable(size)}
}

// match writes into depth[i] the deepest chain position (in blocks) of
// keys this proxy sent to cands[i] and believes may still be cached there,
// 0 for none, and into held[i] the blocks it expects cands[i] to hold: the
// most, over those sends, of the send's position × the chance it survived
// what was written to the endpoint since (survival with the candidate's
// free part free[i] and cache size room[i]; nothing survives room[i]
// tokens). A prompt's shallower blocks were sent as often as its deeper
// ones and at least as lately, so an old deep send may expect less than
// a fresh shallow one (a conversation's history against its shared system
// prompt). at maps each candidate's endpoint to its position in cands
// (read only). It returns the deepest position sent anywhere.
func (x *chainIndex) match(keys []chainKey, cands []Candidate, free, room []float64, depth []int32, held []float64, at map[*endpoints.Endpoint]int32) (anywhere int32) {
	clear(depth)
	clear(held)
	x.mu.Lock()
	defer x.mu.Unlock()
	// left counts the candidates a shallower send could still raise: not
	// matched yet, or matched by a send that may be evicted.
	left := len(cands)
	// The same few endpoints hold most keys of one prompt: remembering
	// where the last ones sit in cands saves the map lookups that were a
	// fifth of a long prompt's pick.
	var seen [chainEntryEndpoints]struct {
		ep *endpoints.Endpoint
		i  int
	}
	next := 0
	for k := len(keys) - 1; k >= 0 && left > 0; k-- {
		e := x.idx.peek(keys[k].Hash)
		if e == nil {
			continue
		}
		blocks := keys[k].Blocks
		anywhere = max(anywhere, blocks)
		for _, s := range e {
			if s.ep == nil {
				break
			}
			i, known := -1, false
			for _, m := range seen {
				if m.ep == s.ep {
					i, known = m.i, true
					break
				}
			}
			if !known {
				if len(cands) > 8 {
					if j, ok := at[s.ep]; ok {
						i = int(j)
					}
				} else {
					for j := range cands {
						if cands[j].Endpoint == s.ep {
							i = j
							break
						}
					}
				}
				seen[next].ep, seen[next].i = s.ep, i
				next = (next + 1) % len(seen)
			}
			if i < 0 || held[i] >= float64(blocks) {
				continue // settled: no shallower send raises it
			}
			p := survival(float64(s.ep.Written()-s.at), free[i], room[i])
			if p <= 0 {
				continue
			}
			if depth[i] == 0 {
				depth[i] = blocks
			}
			if v := float64(blocks) * p; v > held[i] {
				held[i] = v
				if p == 1 {
					left--
				}
			}
		}
	}
	return anywhere
}

// record notes that a prompt with keys went to ep, whose Written count
// after the send is at.
func (x *chainIndex) record(keys []chainKey, ep *endpoints.Endpoint, at int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range keys {
		x.put(k.Hash, ep, at)
	}
}

// put moves ep to the front of key's entry (x.mu held).
func (x *chainIndex) put(key uint64, ep *endpoints.Endpoint, at int64) {
	e := x.idx.get(key)
	if e == nil {
		e = x.idx.add(key)
	}
	// Shift the entries ahead of ep's old place (or all but the oldest)
	// back by one; ep goes first.
	j := len(e) - 1
	for i, o := range e {
		if o.ep == ep || o.ep == nil {
			j = i
			break
		}
	}
	copy(e[1:j+1], e[:j])
	e[0] = sent{ep, at}
}

// recordHashes is record for keys given as hashes (another proxy's send).
func (x *chainIndex) recordHashes(keys []uint64, ep *endpoints.Endpoint, at int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range keys {
		x.put(k, ep, at)
	}
}

// holders appends to out the endpoints (hashes) key was sent to and
// returns it.
func (x *chainIndex) holders(key uint64, out []uint64) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.idx.peek(key)
	if e == nil {
		return out
	}
	for _, s := range e {
		if s.ep == nil {
			break
		}
		out = append(out, s.ep.Hash)
	}
	return out
}

// contains reports whether key was sent anywhere (and is still indexed).
func (x *chainIndex) contains(key uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.idx.contains(key)
}
