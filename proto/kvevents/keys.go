package kvevents

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// RootKey is the parent key of a chain's first block: the adapter's name
// seeds it, since adapters do not share KV with the base model or each
// other ("" is the base model).
func RootKey(lora string) uint64 { return xxhash.Sum64String("infergate-kv\x00" + lora) }

// AppendBlockKeys appends the keys of the full blocks of tokens (blockSize
// tokens each; a partial tail is left out, as engines cache only full
// blocks) to dst: key i hashes block i's token ids with key i-1 as the
// xxhash64 seed (parent for block 0), so equal keys mean equal prefixes.
// It does not allocate beyond growing dst.
func AppendBlockKeys(dst []uint64, parent uint64, tokens []uint32, blockSize int) []uint64 {
	if blockSize <= 0 {
		return dst
	}
	var d xxhash.Digest
	// 64 tokens per write keeps the digest's 32-byte stripes aligned.
	var buf [256]byte
	for len(tokens) >= blockSize {
		d.ResetWithSeed(parent)
		block := tokens[:blockSize]
		for len(block) > 0 {
			n := min(len(block), len(buf)/4)
			for i, t := range block[:n] {
				binary.LittleEndian.PutUint32(buf[4*i:], t)
			}
			_, _ = d.Write(buf[:4*n])
			block = block[n:]
		}
		parent = d.Sum64()
		dst = append(dst, parent)
		tokens = tokens[blockSize:]
	}
	return dst
}

// ByteTokens appends the token ids of modelsim's default tokenizer to dst:
// every 4 bytes of text are one token, read as a little-endian integer (a
// partial last token zero-padded). It is no model's tokenizer; a pool
// served by the simulator with its default tokenizer is matched with it.
func ByteTokens(dst []uint32, text []byte) []uint32 {
	for len(text) >= 4 {
		dst = append(dst, binary.LittleEndian.Uint32(text))
		text = text[4:]
	}
	if len(text) > 0 {
		var pad [4]byte
		copy(pad[:], text)
		dst = append(dst, binary.LittleEndian.Uint32(pad[:]))
	}
	return dst
}
