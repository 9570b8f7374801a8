// Package kvevents is the wire format of vLLM's KV-cache events and the
// block keys both planes compute from token ids.
//
// vLLM (--kv-events-config '{"enable_kv_cache_events":true,"publisher":"zmq",...}')
// publishes on a ZeroMQ PUB socket multipart messages
//
//	[topic, sequence (8 bytes, big-endian), payload]
//
// whose payload is a msgspec-msgpack KVEventBatch: an array
// [ts float, events list, data_parallel_rank int|nil]. Each event is a
// tagged struct, BlockStored, BlockRemoved or AllBlocksCleared. Up to vLLM
// 0.25 events were tagged arrays, ["BlockStored", block_hashes,
// parent_block_hash, token_ids, block_size, lora_id, medium, lora_name, ...];
// since vllm-project/vllm#42892 they are tagged maps, {"type":
// "BlockStored", "block_hashes": ..., ...}, with fields at their default
// left out. Both forms decode here; unknown fields are skipped, so later
// schema additions do not break decoding. Block hashes are ints, or bytes
// (vLLM's default sha256 hashes) folded to their last 8 bytes, big-endian.
//
// A replay ROUTER socket answers a request [empty, start sequence (8 bytes,
// big-endian)] with every buffered batch from that sequence on, each as
// [empty, sequence, payload], then [empty, -1 (8 bytes), empty].
//
// The engine's block hashes are opaque and differ per engine and version,
// so the gateway keys blocks by its own chain over token ids (BlockKeys):
// the control plane computes them from each BlockStored's tokens, a proxy
// from the request's tokens, and both agree by construction.
package kvevents
