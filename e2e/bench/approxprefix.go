package bench

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// The approximate-prefix reference: the reference picker's default
// scheduling profile as published (Gateway API Inference Extension EPP
// v1.5.0, config/loader/defaults.go and the chart's default-plugins.yaml),
// re-implemented here over this proxy's endpoint state so it runs in the
// same harness as the other strategies:
//
//   - queue-scorer ×2: min-max of the scraped waiting queue over the
//     candidates, (max − q) / (max − min), 1 for all when equal;
//   - kv-cache-utilization-scorer ×2: 1 − KV use;
//   - prefix-cache-scorer ×3: matched / total blocks from the
//     approx-prefix-cache-producer: the prompt (the chat messages
//     re-marshalled as JSON, or the completion prompt) cut into blocks of
//     16 tokens × 4 characters, at most 256, hashed as an xxhash64 chain
//     seeded with the target model; after each pick the request's blocks
//     are added to the chosen server's LRU (capacity: the server's KV
//     blocks, as AutoTune reads them from vllm:cache_config_info), and a
//     server matches the blocks of the prompt's longest prefix that any
//     server holds, counted per server;
//   - max-score picker, ties broken at random;
//   - the legacy admission: a sheddable request (priority < 0) is refused
//     when the mean over servers of max(waiting / 5, KV / 0.8) — a server
//     with stale metrics counting 1 — is at least 1.
//
// Differences that cannot matter here: the reference updates the index
// asynchronously after the pick (here under the pick's lock) and keeps it
// per EPP replica, as here per proxy; this proxy's endpoint metrics come
// from its own scrapes every 50 ms (the reference's refresh interval).

// Reference parameters (EPP v1.5.0 defaults).
const (
	refQueueWeight   = 2
	refKVWeight      = 2
	refPrefixWeight  = 3
	refCharsPerToken = 4
	refMaxBlocks     = 256
	// refLRUDefault is the LRU capacity when a server reports no cache
	// size (defaultLRUCapacityPerServer).
	refLRUDefault = 31250
)

// approxPrefix is one proxy's reference picker.
type approxPrefix struct {
	blockChars int
	// capacity is a server's LRU capacity in blocks: its KV blocks.
	capacity func(addr string) int
	// tie draws among equal scores: the global source, or a seeded one
	// in a replay that must repeat (NewApproxPrefix).
	tie func(n uint64) uint64
	// now is the clock (time.Now; a virtual-time replay sets its own).
	now func() time.Time

	mu      sync.Mutex
	servers map[uint64]map[string]struct{} // block hash → servers that may hold it
	lrus    map[string]*lru.Cache[uint64, struct{}]
	match   map[string]int // scratch: blocks matched per server
}

func registerApproxPrefix(r *Registry) {
	r.Add(Strategy{Name: "approx-prefix", Kind: Baseline, Proxies: 1, New: newApproxPrefix,
		About: "the reference picker's published default profile (EPP v1.5.0): queue ×2, KV ×2, prefix ×3 with a per-proxy index of 64-character blocks, an LRU per server sized by its KV blocks, matched/total blocks, shedding — re-implemented in `e2e/bench/approxprefix.go`"})
}

func newApproxPrefix(env *Env) picker.Picker {
	blocks := map[string]int{}
	blockTokens := 0
	for _, r := range env.Fleet.Replicas() {
		cfg := r.Engine().Config()
		blocks[r.Addr()] = cfg.KVBlocks
		blockTokens = cfg.BlockSize
	}
	return newApproxIndex(blockTokens*refCharsPerToken, func(addr string) int {
		if n := blocks[addr]; n > 0 {
			return n
		}
		return refLRUDefault
	})
}

// NewApproxPrefix is the approximate-prefix reference picker for a fleet
// of blocks-per-server KV caches of blockTokens-token blocks, on clock now
// (for replays in virtual time, e2e/routesim), drawing ties from a source
// seeded with seed.
func NewApproxPrefix(blockTokens int, blocks func(addr string) int, now func() time.Time, seed uint64) picker.Picker {
	p := newApproxIndex(blockTokens*refCharsPerToken, blocks)
	p.now, p.tie = now, rand.New(rand.NewPCG(seed, 0)).Uint64N
	return p
}

func newApproxIndex(blockChars int, capacity func(addr string) int) *approxPrefix {
	return &approxPrefix{blockChars: blockChars, capacity: capacity, now: time.Now, servers: map[uint64]map[string]struct{}{},
		lrus: map[string]*lru.Cache[uint64, struct{}]{}, match: map[string]int{}, tie: rand.Uint64N}
}

// Pick implements picker.Picker.
func (p *approxPrefix) Pick(req *picker.Request, cands []*endpoints.Endpoint) (*endpoints.Endpoint, error) {
	if len(cands) == 0 {
		return nil, picker.ErrNoEndpoint
	}
	now := p.now()
	if req.Priority < 0 && refSaturation(cands, now) >= 1 {
		return nil, picker.ErrShed
	}
	model := req.TargetModel
	if model == "" {
		model = req.Model
	}
	hashes := refHashes(model, req.Body, p.blockChars)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.matchLongest(hashes)
	lo, hi := -1.0, -1.0
	for i, e := range cands {
		q := refWaiting(e)
		if i == 0 || q < lo {
			lo = q
		}
		if i == 0 || q > hi {
			hi = q
		}
	}
	var best *endpoints.Endpoint
	var bestScore float64
	var ties uint64
	for _, e := range cands {
		queue := 1.0
		if hi > lo {
			queue = (hi - refWaiting(e)) / (hi - lo)
		}
		kv := 1.0
		if m := e.Metrics(); m != nil {
			kv = 1 - m.KVCacheUsage
		}
		prefix := 0.0
		if len(hashes) > 0 {
			prefix = float64(p.match[e.Address]) / float64(len(hashes))
		}
		score := refQueueWeight*queue + refKVWeight*kv + refPrefixWeight*prefix
		switch {
		case best == nil || score > bestScore:
			best, bestScore, ties = e, score, 1
		case score == bestScore:
			ties++
			if p.tie(ties) == 0 {
				best = e
			}
		}
	}
	p.record(hashes, best.Address)
	return best, nil
}

// matchLongest fills p.match with the blocks each server matches (p.mu
// held): greedy from the first block, every server holding block i counts
// it, until a block no server holds.
func (p *approxPrefix) matchLongest(hashes []uint64) {
	clear(p.match)
	for _, h := range hashes {
		s := p.servers[h]
		if len(s) == 0 {
			break
		}
		for addr := range s {
			p.match[addr]++
		}
	}
}

// record adds hashes to addr's LRU, evicting its least recently added
// blocks beyond its capacity.
func (p *approxPrefix) record(hashes []uint64, addr string) {
	if len(hashes) == 0 {
		return
	}
	c := p.lrus[addr]
	if c == nil {
		c, _ = lru.NewWithEvict(p.capacity(addr), func(h uint64, _ struct{}) {
			if s := p.servers[h]; s != nil {
				delete(s, addr)
				if len(s) == 0 {
					delete(p.servers, h)
				}
			}
		})
		p.lrus[addr] = c
	}
	for _, h := range hashes {
		c.Add(h, struct{}{})
	}
	for _, h := range hashes {
		s := p.servers[h]
		if s == nil {
			s = map[string]struct{}{}
			p.servers[h] = s
		}
		s[addr] = struct{}{}
	}
}

// refWaiting is the scraped waiting queue (0 before the first scrape, as
// the reference's empty metrics).
func refWaiting(e *endpoints.Endpoint) float64 {
	if m := e.Metrics(); m != nil {
		return m.Waiting
	}
	return 0
}

// refSaturation is the reference's utilization detector: the mean over
// servers of max(waiting / 5, KV / 0.8), 1 for a server whose metrics are
// missing or stale.
func refSaturation(cands []*endpoints.Endpoint, now time.Time) float64 {
	var sum float64
	for _, e := range cands {
		m, fresh := e.Fresh(now, e.StaleAfter())
		if !fresh {
			sum++
			continue
		}
		sum += max(m.Waiting/picker.QueueThreshold, m.KVCacheUsage/picker.KVThreshold)
	}
	return sum / float64(len(cands))
}

// refMessage mirrors the reference's chat message as it re-marshals it:
// role (omitted when empty) and content, a string or content blocks.
type refMessage struct {
	Role    string     `json:"role,omitempty"`
	Content refContent `json:"content"`
}

type refContent struct {
	Raw        string
	Structured []refBlock
}

type refBlock struct {
	Type       string `json:"type"`
	Text       string `json:"text,omitempty"`
	ImageURL   refURL `json:"image_url"`
	InputAudio struct {
		Data   string `json:"data,omitempty"`
		Format string `json:"format,omitempty"`
	} `json:"input_audio"`
	VideoURL refURL `json:"video_url"`
}

type refURL struct {
	URL string `json:"url,omitempty"`
}

func (c *refContent) UnmarshalJSON(b []byte) error {
	if json.Unmarshal(b, &c.Raw) == nil {
		return nil
	}
	return json.Unmarshal(b, &c.Structured)
}

func (c refContent) MarshalJSON() ([]byte, error) {
	switch {
	case c.Raw != "":
		return json.Marshal(c.Raw)
	case c.Structured != nil:
		return json.Marshal(c.Structured)
	}
	return json.Marshal("")
}

// refPrompt is a completion prompt: a string or strings.
type refPrompt struct {
	Raw     string
	Strings []string
}

func (p *refPrompt) UnmarshalJSON(b []byte) error {
	if json.Unmarshal(b, &p.Raw) == nil {
		return nil
	}
	return json.Unmarshal(b, &p.Strings)
}

// refHashes is the reference's hashPrompt: the chat messages re-marshalled
// as JSON (or the completion prompt's text) in blocks of blockChars
// characters, at most refMaxBlocks, each hashed with its predecessor's
// hash; the chain starts from the hash of the model (and cache salt).
// A body it cannot read has no blocks.
func refHashes(model string, body []byte, blockChars int) []uint64 {
	var req struct {
		Messages  []refMessage `json:"messages"`
		Prompt    *refPrompt   `json:"prompt"`
		CacheSalt string       `json:"cache_salt"`
	}
	if blockChars <= 0 || json.Unmarshal(body, &req) != nil {
		return nil
	}
	var input []byte
	switch {
	case req.Messages != nil:
		input, _ = json.Marshal(req.Messages)
	case req.Prompt != nil && req.Prompt.Raw != "":
		input = []byte(req.Prompt.Raw)
	case req.Prompt != nil:
		input = []byte(strings.Join(req.Prompt.Strings, " "))
	}
	if len(input) < blockChars {
		return nil
	}
	input = input[:min(len(input), refMaxBlocks*blockChars)]
	d := xxhash.New()
	_, _ = d.WriteString(model)
	_, _ = d.WriteString(req.CacheSalt)
	prev := d.Sum64()
	out := make([]uint64, 0, len(input)/blockChars)
	var buf [8]byte
	for i := 0; i+blockChars <= len(input); i += blockChars {
		d.Reset()
		_, _ = d.Write(input[i : i+blockChars])
		binary.LittleEndian.PutUint64(buf[:], prev)
		_, _ = d.Write(buf[:])
		prev = d.Sum64()
		out = append(out, prev)
	}
	return out
}
