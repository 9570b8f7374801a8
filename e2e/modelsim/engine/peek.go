package engine

// Ground truth for routing oracles: what a replica holds right now, read
// under the engine's core lock between steps. A real server exports none
// of this (only scraped gauges and, for some, KV events); the routing
// benchmark's oracle uses it to bound what any picker could do.

// CachedTokens is Core.CachedTokens on the running engine: the prefix
// cache as the step being executed left it (a request arriving now is
// admitted at the earliest when that step ends).
func (e *Engine) CachedTokens(prompt []byte, adapter string) int {
	e.coreMu.Lock()
	defer e.coreMu.Unlock()
	return e.core.CachedTokens(prompt, adapter)
}

// CachedTokenIDs is CachedTokens for a prompt given as token ids.
func (e *Engine) CachedTokenIDs(tokens []uint32, adapter string) int {
	e.coreMu.Lock()
	defer e.coreMu.Unlock()
	return e.core.CachedTokenIDs(tokens, adapter)
}

// Load is the engine's state now — as the step being executed leaves it,
// plus the requests submitted since (waiting) — rather than Stats' state
// as of the last step's end.
func (e *Engine) Load() Stats {
	// The inbox is read under coreMu too: drain moves it into the core
	// under coreMu, so a request is counted in exactly one of the two (read
	// apart, a request drained in between was in neither).
	e.coreMu.Lock()
	defer e.coreMu.Unlock()
	s := e.core.Stats()
	e.mu.Lock()
	s.Waiting += len(e.inbox)
	e.mu.Unlock()
	return s
}

// Submitted counts the requests Submit accepted since the engine started.
func (e *Engine) Submitted() int64 { return e.submitted.Load() }
