package modelsim

import (
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// TokenizerBytes is the default tokenizer: engine.CharsPerToken bytes of
// rendered prompt per token (kvevents.ByteTokens).
const TokenizerBytes = "bytes"

// tokenIDs are g's prompt token ids under the replica's real tokenizer,
// nil with the default one (the engine then counts bytes). As vLLM does, a
// chat prompt is the rendered template (which starts with
// <|begin_of_text|>), a text prompt gets BOS first, and token ids are
// taken as they are.
func (r *Replica) tokenIDs(g GenerationRequest) []uint32 {
	if r.tok == nil {
		return nil
	}
	if g.TokenIDs != nil {
		return g.TokenIDs
	}
	return r.tok.Encode(nil, g.Prompt, !g.Chat)
}

// newTokenizer loads the configured real tokenizer (nil for bytes).
func newTokenizer(name string) (*cl100k.Encoder, error) {
	if name != cl100k.Name {
		return nil, nil
	}
	return cl100k.NewEncoder()
}
