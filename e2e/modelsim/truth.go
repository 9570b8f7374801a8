package modelsim

import (
	"bytes"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// Ground truth for routing oracles. A real model server exports none of
// this — a gateway sees scraped gauges and, where the server publishes
// them, KV events — so nothing in the gateway may use it; the routing
// benchmark's oracle does, to show the limit of what any picker could do
// with perfect information.

// CachedPromptTokens is how many leading tokens of the prompt of an
// OpenAI chat or text completion request body the replica's prefix cache
// holds now (what admission would reuse if the request arrived at once).
// It fails like the API would for a body it cannot parse or a model it
// does not serve.
func (r *Replica) CachedPromptTokens(body []byte) (int, error) {
	g, err := ParseGeneration(body)
	if err != nil {
		return 0, err
	}
	return r.CachedTokens(g)
}

// ParseGeneration parses a chat request body (one with "messages") or a
// text completion body, as the API does.
func ParseGeneration(body []byte) (GenerationRequest, error) {
	if bytes.Contains(body, []byte(`"messages"`)) {
		return ParseChatRequest(body)
	}
	return ParseCompletionRequest(body)
}

// CachedTokens is CachedPromptTokens for a parsed request (parse once,
// ask every replica); it fails for a model the replica does not serve.
func (r *Replica) CachedTokens(g GenerationRequest) (int, error) {
	adapter, aerr := r.resolve(g.Model)
	if aerr != nil {
		return 0, aerr
	}
	if r.tok != nil {
		return r.eng.CachedTokenIDs(r.tokenIDs(g), adapter), nil
	}
	return r.eng.CachedTokens(g.Prompt, adapter), nil
}

// Load is the engine's state now (engine.Engine.Load), not as of its last
// step or scrape.
func (r *Replica) Load() engine.Stats { return r.eng.Load() }

// Submitted counts the requests the replica's engine accepted: a caller
// that counts what it sent the replica can tell how many are still on
// their way (or were refused before reaching the engine).
func (r *Replica) Submitted() int64 { return r.eng.Submitted() }

// MaxLoRAs is the number of adapter slots the replica reports (0 when it
// serves no adapters, as vllm:lora_requests_info is absent then).
func (r *Replica) MaxLoRAs() int {
	if len(r.cfg.LoRAModules) == 0 {
		return 0
	}
	return r.eng.Config().MaxLoRAs
}
