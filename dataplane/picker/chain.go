package picker

import (
	"encoding/binary"

	"github.com/zeebo/xxh3"
)

// The cost model matches a prompt against where its prefixes went at
// block granularity over the whole prompt — a conversation's history, not
// only a leading window — without hashing or indexing every block: the
// chain of block hashes (64-byte blocks ≈ 16 tokens; each key the hash of
// the previous key and the blocks since, seeded by the model, so equal keys
// mean equal prefixes) is read at
// positions that are dense where prompts differ early (4 and 8 blocks),
// every chainStride blocks up to chainStride × chainRelative blocks, then
// every 1/chainRelative of the depth (rounded to chainStride), plus the
// prompt's last block. A match is credited at the deepest recorded
// position both prompts share, so it is exact to chainStride blocks (256
// tokens) in the first 4k tokens and to 1/16 of the depth beyond: a
// 32k-token conversation's next turn is matched to within 2k tokens with
// 62 keys instead of 130 (the index work of a pick scales with the keys).
const (
	// chainStride is the spacing of recorded positions after the first
	// few, in blocks.
	chainStride = 16
	// chainRelative: beyond chainStride × chainRelative blocks, positions
	// are 1/chainRelative of the depth apart.
	chainRelative = 16
	// maxChainBlocks bounds how much of a prompt is hashed (256k
	// characters ≈ 64k tokens; bodies are bounded long before).
	maxChainBlocks = 4096
)

// chainKey is the hash of a prompt's first Blocks blocks.
type chainKey struct {
	Blocks int32
	Hash   uint64
}

// appendChain appends the chain keys of the prompt in body, in increasing
// depth, and returns it with the prompt's number of full blocks.
func appendChain(dst []chainKey, model string, body []byte) (_ []chainKey, total int) {
	p := promptStart(body)
	n := min(len(p)/BlockChars, maxChainBlocks)
	if n == 0 {
		return dst, 0
	}
	// Each stretch between recorded positions is hashed in one call and
	// folded into the previous key: xxh3's vectorised one-shot hash reads a
	// long prompt about twice as fast as a streaming xxhash64 digest (which
	// was half of a 32k-token pick), and positions depend only on the block
	// index, so two prompts cut the same stretches wherever they agree.
	key := xxh3.HashString(model)
	var fold [16]byte
	done := 0
	next := func(b int) int {
		switch {
		case b < 4:
			return 4
		case b < 8:
			return 8
		}
		step := max(chainStride, (b/chainRelative)&^(chainStride-1))
		return (b/step + 1) * step
	}
	for b := next(0); ; b = next(b) {
		b = min(b, n)
		binary.LittleEndian.PutUint64(fold[:8], key)
		binary.LittleEndian.PutUint64(fold[8:], xxh3.Hash(p[done*BlockChars:b*BlockChars]))
		key = xxh3.Hash(fold[:])
		done = b
		dst = append(dst, chainKey{Blocks: int32(b), Hash: key})
		if b == n {
			return dst, n
		}
	}
}
