package engine

import (
	"github.com/infergate/infergate/proto/kvevents"
)

// KV-cache events, as vLLM publishes them with --kv-events-config: a
// BlockStored when a run of a request's full prompt blocks is published to
// the prefix cache (engine hashes, the parent block's hash, the blocks'
// token ids), a BlockRemoved when cached blocks are evicted to make room,
// an AllBlocksCleared when the prefix cache is reset. Token ids come from
// the simulator's tokenizer (TokenIDs).

// kvEventLog gathers one step's events.
type kvEventLog struct {
	events  []kvevents.Event
	removed []uint64
}

// EnableKVEvents makes every later Step report the prefix-cache changes
// in StepResult.KV. Call before the first Step.
func (c *Core) EnableKVEvents() {
	if c.kv.events == nil {
		c.kv.events = &kvEventLog{}
	}
}

// TokenIDs are the simulator's token ids of text: each CharsPerToken bytes
// read as a little-endian integer, a partial last token zero-padded
// (kvevents.ByteTokens, which a gateway configured for modelsim's
// tokenizer uses too).
func TokenIDs(dst []uint32, text []byte) []uint32 { return kvevents.ByteTokens(dst, text) }

// registerBlocks publishes r's prompt blocks computed so far and records
// a BlockStored for each run of blocks this request published (a block
// whose prefix another request published first stays private, as the
// engine keeps one copy, and breaks the run).
func (c *Core) registerBlocks(r *Request) {
	bs := c.cfg.BlockSize
	var run *kvevents.Event
	for r.registered < len(r.hashes) && (r.registered+1)*bs <= r.kvTokens {
		i := r.registered
		r.registered++
		if !c.kv.register(r.blocks[i], r.hashes[i]) || c.kv.events == nil {
			run = nil
			continue
		}
		if run == nil {
			c.kv.events.events = append(c.kv.events.events, kvevents.Event{Kind: kvevents.BlockStored, BlockSize: bs, LoRAName: r.Adapter, Medium: "GPU"})
			run = &c.kv.events.events[len(c.kv.events.events)-1]
			if i > 0 {
				run.ParentHash, run.HasParent = r.hashes[i-1], true
			}
		}
		run.BlockHashes = append(run.BlockHashes, r.hashes[i])
		if r.Tokens != nil {
			run.TokenIDs = append(run.TokenIDs, r.Tokens[i*bs:(i+1)*bs]...)
		} else {
			span := bs * CharsPerToken
			run.TokenIDs = TokenIDs(run.TokenIDs, r.Prompt[i*span:(i+1)*span])
		}
	}
}

// evicted records that a cached block's prefix left the cache.
func (c *kvCache) evicted(hash uint64) {
	if c.events != nil {
		c.events.removed = append(c.events.removed, hash)
	}
}

// takeEvents returns the events gathered since the last call, evictions
// first: in a step, blocks are evicted to make room before new ones are
// published, and a hash evicted and stored again in one step must end
// up stored.
func (c *kvCache) takeEvents() []kvevents.Event {
	l := c.events
	if l == nil || (len(l.events) == 0 && len(l.removed) == 0) {
		return nil
	}
	out := make([]kvevents.Event, 0, len(l.events)+1)
	if len(l.removed) > 0 {
		out = append(out, kvevents.Event{Kind: kvevents.BlockRemoved, BlockHashes: l.removed, Medium: "GPU"})
	}
	out = append(out, l.events...)
	l.events, l.removed = nil, nil
	return out
}

// ResetPrefixCache forgets every cached prefix (vLLM's
// /reset_prefix_cache): blocks in use stay with their requests but are no
// longer shared. With KV events on, it reports AllBlocksCleared.
func (c *Core) ResetPrefixCache() []kvevents.Event {
	for h, i := range c.kv.cached {
		c.kv.blocks[i].hashed = false
		delete(c.kv.cached, h)
	}
	// Requests keep computing their own blocks without publishing them
	// again; a later request publishes the prefix anew.
	if c.kv.events == nil {
		return nil
	}
	pending := c.kv.takeEvents()
	return append(pending, kvevents.Event{Kind: kvevents.AllBlocksCleared})
}

// SetKVSink turns KV events on: after each step, sink gets the step's
// prefix-cache changes, on the engine goroutine, in order. It may be
// called while the engine runs; prefixes cached before are never
// announced (as when a subscriber joins late).
func (e *Engine) SetKVSink(sink func([]kvevents.Event)) {
	// The sink first: a step that records events must find it.
	e.kvSink.Store(&sink)
	e.coreMu.Lock()
	e.core.EnableKVEvents()
	e.coreMu.Unlock()
}

func (e *Engine) emitKV(evs []kvevents.Event) {
	if p := e.kvSink.Load(); p != nil && len(evs) > 0 {
		(*p)(evs)
	}
}

// ResetPrefixCache asks the engine to forget every cached prefix (vLLM's
// POST /reset_prefix_cache); it happens on the engine goroutine before its
// next step.
func (e *Engine) ResetPrefixCache() {
	e.mu.Lock()
	e.resetCache = true
	e.mu.Unlock()
	e.poke()
}
