package engine

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/proto/kvevents"
)

// CharsPerToken is the simulator's tokenizer: every CharsPerToken bytes of the
// rendered prompt are one token (the last partial chunk counts as one). It is
// deliberately trivial so that the same text always yields the same tokens and
// therefore the same KV blocks, and so that a gateway hashing 64-character
// chunks sees exactly the simulator's 16-token blocks.
const CharsPerToken = 4

// NumTokens is the token count of a text of n bytes.
func NumTokens(n int) int {
	return (n + CharsPerToken - 1) / CharsPerToken
}

// BlockHashes returns the chained hashes of the full blocks of prompt: block
// i's hash covers its own bytes and the hash of block i-1, like vLLM's prefix
// cache, so equal hashes mean equal prefixes. The root is seeded with the LoRA
// adapter name because adapters do not share KV.
func BlockHashes(prompt []byte, blockSize int, adapter string) []uint64 {
	span := blockSize * CharsPerToken
	n := len(prompt) / span
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	parent := xxhash.Sum64String(adapter)
	var d xxhash.Digest
	var buf [8]byte
	for i := range n {
		d.Reset()
		binary.LittleEndian.PutUint64(buf[:], parent)
		_, _ = d.Write(buf[:])
		_, _ = d.Write(prompt[i*span : (i+1)*span])
		parent = d.Sum64()
		out[i] = parent
	}
	return out
}

// TokenBlockHashes are the chained hashes of the full blocks of a prompt
// given as token ids (a real tokenizer's): the gateway's block keys
// (kvevents.AppendBlockKeys), which is as good an engine hash as any.
func TokenBlockHashes(tokens []uint32, blockSize int, adapter string) []uint64 {
	return kvevents.AppendBlockKeys(nil, kvevents.RootKey(adapter), tokens, blockSize)
}
