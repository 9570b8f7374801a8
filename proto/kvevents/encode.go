package kvevents

import "github.com/tinylib/msgp/msgp"

// AppendBatch appends b encoded as current vLLM publishes it (a
// [ts, events, data_parallel_rank] array of tagged maps, msgspec field
// order, defaults left out as msgspec's omit_defaults does) to dst.
func AppendBatch(dst []byte, b *Batch) []byte {
	dst = msgp.AppendArrayHeader(dst, 3)
	dst = msgp.AppendFloat64(dst, b.TS)
	dst = msgp.AppendArrayHeader(dst, uint32(len(b.Events)))
	for i := range b.Events {
		dst = appendEvent(dst, &b.Events[i])
	}
	if b.DPRank < 0 {
		return msgp.AppendNil(dst)
	}
	return msgp.AppendInt(dst, b.DPRank)
}

func appendEvent(dst []byte, e *Event) []byte {
	switch e.Kind {
	case BlockStored:
		// Fields without a default are always written; extra_keys (one nil
		// per block: no multimodal or salt keys), group_idx and
		// kv_cache_spec_kind as vLLM 0.26 fills them for a text model's
		// full-attention cache.
		dst = msgp.AppendMapHeader(dst, 11)
		dst = msgp.AppendString(dst, "type")
		dst = msgp.AppendString(dst, "BlockStored")
		dst = appendHashes(dst, e.BlockHashes)
		dst = msgp.AppendString(dst, "parent_block_hash")
		if e.HasParent {
			dst = msgp.AppendUint64(dst, e.ParentHash)
		} else {
			dst = msgp.AppendNil(dst)
		}
		dst = msgp.AppendString(dst, "token_ids")
		dst = msgp.AppendArrayHeader(dst, uint32(len(e.TokenIDs)))
		for _, t := range e.TokenIDs {
			dst = msgp.AppendUint32(dst, t)
		}
		dst = msgp.AppendString(dst, "block_size")
		dst = msgp.AppendInt(dst, e.BlockSize)
		dst = msgp.AppendString(dst, "lora_id")
		if e.LoRAID != 0 {
			dst = msgp.AppendInt64(dst, e.LoRAID)
		} else {
			dst = msgp.AppendNil(dst)
		}
		dst = appendMedium(dst, e.Medium)
		dst = msgp.AppendString(dst, "lora_name")
		if e.LoRAName != "" {
			dst = msgp.AppendString(dst, e.LoRAName)
		} else {
			dst = msgp.AppendNil(dst)
		}
		dst = msgp.AppendString(dst, "extra_keys")
		dst = msgp.AppendArrayHeader(dst, uint32(len(e.BlockHashes)))
		for range e.BlockHashes {
			dst = msgp.AppendNil(dst)
		}
		dst = msgp.AppendString(dst, "group_idx")
		dst = msgp.AppendInt(dst, 0)
		dst = msgp.AppendString(dst, "kv_cache_spec_kind")
		return msgp.AppendString(dst, "full_attention")
	case BlockRemoved:
		dst = msgp.AppendMapHeader(dst, 4)
		dst = msgp.AppendString(dst, "type")
		dst = msgp.AppendString(dst, "BlockRemoved")
		dst = appendHashes(dst, e.BlockHashes)
		dst = appendMedium(dst, e.Medium)
		dst = msgp.AppendString(dst, "group_idx")
		return msgp.AppendInt(dst, 0)
	default:
		dst = msgp.AppendMapHeader(dst, 1)
		dst = msgp.AppendString(dst, "type")
		return msgp.AppendString(dst, "AllBlocksCleared")
	}
}

func appendHashes(dst []byte, hs []uint64) []byte {
	dst = msgp.AppendString(dst, "block_hashes")
	dst = msgp.AppendArrayHeader(dst, uint32(len(hs)))
	for _, h := range hs {
		dst = msgp.AppendUint64(dst, h)
	}
	return dst
}

func appendMedium(dst []byte, m string) []byte {
	dst = msgp.AppendString(dst, "medium")
	if m == "" {
		return msgp.AppendNil(dst)
	}
	return msgp.AppendString(dst, m)
}
