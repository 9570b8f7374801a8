package picker

import (
	"bytes"

	"github.com/cespare/xxhash/v2"
)

// Prefix block hashing, as the reference picker and vLLM's prefix cache do:
// the prompt is cut into fixed blocks (16 tokens ≈ 64 characters) and block
// i's hash identifies the whole prefix up to and including block i. Rather
// than re-hashing each block with its parent's hash (72 bytes per block,
// Sum64 per block), one xxhash64 digest streams over the prompt and is read
// at every block boundary: the same chaining property (equal hash ⇔ equal
// prefix, seeded by the model) at streaming speed. The hashes only need to
// agree between proxies, not with the model server's own.
const (
	// BlockChars is the block size in bytes of prompt text.
	BlockChars = 64
	// charsPerToken estimates a prompt's tokens from its bytes where no
	// tokenizer says better (English BPE averages about 4).
	charsPerToken = 4
	// MaxBlocks bounds how much of a prompt is hashed (256 blocks ≈ 4k
	// tokens): beyond it, prefixes are long enough to tell apart.
	MaxBlocks = 256
)

var (
	keyMessages = []byte(`"messages"`)
	keyPrompt   = []byte(`"prompt"`)
	keyInput    = []byte(`"input"`)
)

// promptStart returns the part of a JSON request body holding the prompt:
// from its "messages" (chat), "prompt" (completions) or "input" (responses,
// embeddings) key on. Fields before it (model, stream, user, max_tokens)
// differ between requests sharing a prompt, so they must not seed the
// chain. Without such a key the whole body is the prompt.
func promptStart(body []byte) []byte {
	for _, k := range [...][]byte{keyMessages, keyPrompt, keyInput} {
		if i := bytes.Index(body, k); i >= 0 {
			return body[i:]
		}
	}
	return body
}

// AppendBlockHashes appends the chained hashes of the full 64-byte blocks of
// the prompt in body (at most MaxBlocks) to dst and returns it. The chain is
// seeded with model, because adapters and models do not share KV cache.
// With a dst of capacity MaxBlocks it does not allocate.
func AppendBlockHashes(dst []uint64, model string, body []byte) []uint64 {
	p := promptStart(body)
	n := min(len(p)/BlockChars, MaxBlocks)
	if n == 0 {
		return dst
	}
	// Seeding with the model's hash keeps every 64-byte write aligned to
	// the digest's 32-byte stripes, so no byte is copied into its buffer.
	var d xxhash.Digest
	d.ResetWithSeed(xxhash.Sum64String(model))
	for i := range n {
		_, _ = d.Write(p[i*BlockChars : (i+1)*BlockChars])
		dst = append(dst, d.Sum64())
	}
	return dst
}

// prefixKey is the hash of a prompt's first Blocks blocks.
type prefixKey struct {
	Blocks int
	Hash   uint64
}

// appendPrefixKeys is AppendBlockHashes reduced to the positions the prefix
// index records — 1, 2, 4, …, 256 blocks and the prompt's last block — in
// increasing order. Reading the digest only there keeps a pick's hashing at
// streaming speed. total is the prompt's number of full blocks.
func appendPrefixKeys(dst []prefixKey, model string, body []byte) (_ []prefixKey, total int) {
	p := promptStart(body)
	n := min(len(p)/BlockChars, MaxBlocks)
	if n == 0 {
		return dst, 0
	}
	var d xxhash.Digest
	d.ResetWithSeed(xxhash.Sum64String(model))
	done := 0
	for b := 1; ; b *= 2 {
		b = min(b, n)
		_, _ = d.Write(p[done*BlockChars : b*BlockChars])
		done = b
		dst = append(dst, prefixKey{Blocks: b, Hash: d.Sum64()})
		if b == n {
			return dst, n
		}
	}
}
