package picker

import (
	"strings"
	"testing"
)

// A long prompt is keyed every chainStride blocks for its first
// chainStride × chainRelative blocks and every 1/chainRelative of the
// depth after, so a match is exact to 1/16 of what two prompts share; its
// last block is always a key, and equal prefixes give equal keys.
func TestChainPositions(t *testing.T) {
	const blocks = 2048 // ~32k tokens
	prompt := strings.Repeat("and then the user asked about the next chapter of the report. ", blocks*BlockChars/62+1)[:blocks*BlockChars]
	body := []byte(`{"model":"m","prompt":"` + prompt + `"}`)
	keys, total := appendChain(nil, "m", body)
	if total != blocks || keys[len(keys)-1].Blocks != blocks {
		t.Fatalf("total %d, last key at %d: want both %d", total, keys[len(keys)-1].Blocks, blocks)
	}
	if len(keys) > 64 {
		t.Fatalf("%d keys for %d blocks, want at most 64", len(keys), blocks)
	}
	prev := int32(0)
	for _, k := range keys {
		gap := k.Blocks - prev
		if limit := max(chainStride, prev/chainRelative); prev >= 8 && gap > limit {
			t.Fatalf("keys at %d and %d blocks: %d apart, want at most %d", prev, k.Blocks, gap, limit)
		}
		prev = k.Blocks
	}
	// The same prompt cut short has the same keys up to its own end.
	short, _ := appendChain(nil, "m", []byte(`{"model":"m","prompt":"`+prompt[:1000*BlockChars]+`"}`))
	for i, k := range short[:len(short)-1] {
		if k != keys[i] {
			t.Fatalf("key %d of the shorter prompt: %+v, the longer has %+v", i, k, keys[i])
		}
	}
}

// A prompt that differs in one byte differs from the key whose stretch
// holds that byte on; another model shares no key with the same prompt.
func TestChainKeysDivergeWherePromptsDo(t *testing.T) {
	const blocks = 1024
	prompt := []byte(strings.Repeat("0123456789abcdef", blocks*BlockChars/16))
	body := func(model string, p []byte) []byte {
		return []byte(`{"model":"` + model + `","prompt":"` + string(p) + `"}`)
	}
	keys, _ := appendChain(nil, "m", body("m", prompt))
	const at = 500*BlockChars + 7
	changed := append([]byte(nil), prompt...)
	changed[at] = 'X'
	other, _ := appendChain(nil, "m", body("m", changed))
	if len(other) != len(keys) {
		t.Fatalf("%d keys, want %d", len(other), len(keys))
	}
	// `"prompt":"` precedes the prompt in what is hashed.
	byteBlock := int32((at + len(`"prompt":"`)) / BlockChars)
	for i := range keys {
		same := keys[i] == other[i]
		if want := keys[i].Blocks <= byteBlock; same != want {
			t.Fatalf("key at %d blocks: equal %v, want %v (the prompts differ in block %d)", keys[i].Blocks, same, want, byteBlock)
		}
	}
	lora, _ := appendChain(nil, "adapter", body("m", prompt))
	for i := range keys {
		if keys[i] == lora[i] {
			t.Fatalf("key at %d blocks is the same for two models", keys[i].Blocks)
		}
	}
}
