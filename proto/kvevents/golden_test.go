package kvevents

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"testing"
)

// mp writes msgpack by hand, the way msgspec does (shortest integer
// encodings, float64 floats, str8/fixstr strings), so the golden payloads
// below do not depend on the encoder under test.
type mp struct{ b []byte }

func (m *mp) arr(n int) *mp {
	if n < 16 {
		m.b = append(m.b, 0x90|byte(n))
	} else {
		m.b = append(m.b, 0xdc, byte(n>>8), byte(n))
	}
	return m
}
func (m *mp) mapH(n int) *mp { m.b = append(m.b, 0x80|byte(n)); return m }
func (m *mp) nil() *mp       { m.b = append(m.b, 0xc0); return m }
func (m *mp) str(s string) *mp {
	if len(s) < 32 {
		m.b = append(m.b, 0xa0|byte(len(s)))
	} else {
		m.b = append(m.b, 0xd9, byte(len(s)))
	}
	m.b = append(m.b, s...)
	return m
}
func (m *mp) bin(v []byte) *mp { m.b = append(append(m.b, 0xc4, byte(len(v))), v...); return m }
func (m *mp) u(v uint64) *mp {
	switch {
	case v < 128:
		m.b = append(m.b, byte(v))
	case v < 1<<8:
		m.b = append(m.b, 0xcc, byte(v))
	case v < 1<<16:
		m.b = binary.BigEndian.AppendUint16(append(m.b, 0xcd), uint16(v))
	case v < 1<<32:
		m.b = binary.BigEndian.AppendUint32(append(m.b, 0xce), uint32(v))
	default:
		m.b = binary.BigEndian.AppendUint64(append(m.b, 0xcf), v)
	}
	return m
}
func (m *mp) f64(v float64) *mp {
	m.b = binary.BigEndian.AppendUint64(append(m.b, 0xcb), math.Float64bits(v))
	return m
}

// Token ids of "<|im_start|>user\nWhere is the capital of China?<|im_end|>\n
// <|im_start|>assistant\n<think>" in Qwen3's tokenizer: one 16-token block.
var qwenTokens = []uint64{151644, 872, 198, 9064, 374, 279, 6722, 315, 5616, 30, 151645, 198, 151644, 77091, 198, 151667}

// vllm026 is the batch vLLM 0.26.0 published for that prompt with
// --kv-events-config '{"enable_kv_cache_events":true,"publisher":"zmq","topic":"kv-events"}'
// and VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1, as a subscriber printed it
// (volcano-sh/kthena#1535):
//
//	[1789095808.8378847, [{'type': 'BlockStored', 'block_hashes': [15760518052499183552],
//	  'parent_block_hash': None, 'token_ids': [...], 'block_size': 16, 'lora_id': None,
//	  'medium': 'GPU', 'lora_name': None, 'extra_keys': [None], 'group_idx': 0,
//	  'kv_cache_spec_kind': 'full_attention'}], 0]
func vllm026() []byte {
	m := &mp{}
	m.arr(3).f64(1789095808.8378847).arr(1).mapH(11)
	m.str("type").str("BlockStored")
	m.str("block_hashes").arr(1).u(15760518052499183552)
	m.str("parent_block_hash").nil()
	m.str("token_ids").arr(len(qwenTokens))
	for _, t := range qwenTokens {
		m.u(t)
	}
	m.str("block_size").u(16)
	m.str("lora_id").nil()
	m.str("medium").str("GPU")
	m.str("lora_name").nil()
	m.str("extra_keys").arr(1).nil()
	m.str("group_idx").u(0)
	m.str("kv_cache_spec_kind").str("full_attention")
	m.u(0)
	return m.b
}

func tokens32(ts []uint64) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = uint32(t)
	}
	return out
}

func TestDecodeVLLM026MapForm(t *testing.T) {
	payload := vllm026()
	var b Batch
	var d Decoder
	if err := d.Decode(payload, &b); err != nil {
		t.Fatal(err)
	}
	want := Batch{TS: 1789095808.8378847, DPRank: 0, Events: []Event{{
		Kind: BlockStored, BlockHashes: []uint64{15760518052499183552}, TokenIDs: tokens32(qwenTokens),
		BlockSize: 16, Medium: "GPU",
	}}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", b, want)
	}
	// The encoder writes exactly vLLM's shape.
	if got := AppendBatch(nil, &want); !bytes.Equal(got, payload) {
		t.Fatalf("AppendBatch differs from vLLM 0.26's bytes:\n got %x\nwant %x", got, payload)
	}
}

// vllmArrayForm is a batch as vLLM 0.11–0.25 publishes it: events are
// tagged arrays (msgspec array_like=True) in field order, block hashes
// are sha256 bytes (the default without VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES).
func vllmArrayForm() (payload []byte, h0, h1 []byte) {
	h0 = bytes.Repeat([]byte{0xab}, 24)
	h0 = append(h0, 1, 2, 3, 4, 5, 6, 7, 8)
	h1 = bytes.Repeat([]byte{0xcd}, 32)
	m := &mp{}
	m.arr(3).f64(1.5).arr(4)
	m.arr(8).str("BlockStored").arr(1).bin(h1).bin(h0).arr(4).u(1).u(2).u(3).u(70000).u(4).nil().str("GPU").str("sql-lora")
	m.arr(3).str("BlockRemoved").arr(2).bin(h0).u(7).str("GPU")
	m.arr(1).str("AllBlocksCleared")
	// A later field appended to the array form (extra_keys) is skipped.
	m.arr(9).str("BlockStored").arr(1).u(9).nil().arr(2).u(5).u(6).u(2).u(3).nil().nil().arr(1).nil()
	m.u(2)
	return m.b, h0, h1
}

func TestDecodeArrayFormWithByteHashes(t *testing.T) {
	payload, h0, h1 := vllmArrayForm()
	var b Batch
	var d Decoder
	if err := d.Decode(payload, &b); err != nil {
		t.Fatal(err)
	}
	fold := func(h []byte) uint64 { return binary.BigEndian.Uint64(h[len(h)-8:]) }
	want := Batch{TS: 1.5, DPRank: 2, Events: []Event{
		{Kind: BlockStored, BlockHashes: []uint64{fold(h1)}, ParentHash: fold(h0), HasParent: true,
			TokenIDs: []uint32{1, 2, 3, 70000}, BlockSize: 4, Medium: "GPU", LoRAName: "sql-lora"},
		{Kind: BlockRemoved, BlockHashes: []uint64{fold(h0), 7}, Medium: "GPU"},
		{Kind: AllBlocksCleared},
		{Kind: BlockStored, BlockHashes: []uint64{9}, TokenIDs: []uint32{5, 6}, BlockSize: 2, LoRAID: 3},
	}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", b, want)
	}
	if fold(h0) != 0x0102030405060708 {
		t.Fatalf("bytes hash folded to %x", fold(h0))
	}
}

func TestDecodeBatchWithoutRankAndMapBatch(t *testing.T) {
	var d Decoder
	var b Batch
	// [ts, events] from before data_parallel_rank existed.
	m := (&mp{}).arr(2).f64(2).arr(1).mapH(1).str("type").str("AllBlocksCleared")
	if err := d.Decode(m.b, &b); err != nil || b.DPRank != -1 || len(b.Events) != 1 || b.Events[0].Kind != AllBlocksCleared {
		t.Fatalf("err %v batch %+v", err, b)
	}
	// A map-form batch (vLLM main dropped array_like from EventBatch too),
	// keys in any order, unknown keys skipped.
	m = (&mp{}).mapH(4).str("future").arr(1).u(1).str("events").arr(1).
		mapH(3).str("block_hashes").arr(1).u(5).str("medium").nil().str("type").str("BlockRemoved").
		str("data_parallel_rank").u(1).str("ts").f64(3)
	if err := d.Decode(m.b, &b); err != nil {
		t.Fatal(err)
	}
	want := Batch{TS: 3, DPRank: 1, Events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{5}}}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("decoded %+v want %+v", b, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := vllm026()
	cases := map[string][]byte{
		"empty":         nil,
		"truncated":     good[:len(good)-3],
		"trailing":      append(append([]byte{}, good...), 0xc0),
		"not a batch":   (&mp{}).str("x").b,
		"unknown tag":   (&mp{}).arr(3).f64(1).arr(1).arr(1).str("BlockMoved").u(0).b,
		"no tag":        (&mp{}).arr(3).f64(1).arr(1).mapH(1).str("block_hashes").arr(1).u(1).u(0).b,
		"tokens/blocks": (&mp{}).arr(3).f64(1).arr(1).arr(5).str("BlockStored").arr(1).u(1).nil().arr(3).u(1).u(2).u(3).u(2).u(0).b,
		"zero block":    (&mp{}).arr(3).f64(1).arr(1).arr(5).str("BlockStored").arr(1).u(1).nil().arr(0).u(0).u(0).b,
		"no hashes":     (&mp{}).arr(3).f64(1).arr(1).arr(3).str("BlockRemoved").arr(0).nil().u(0).b,
		"string hash":   (&mp{}).arr(3).f64(1).arr(1).arr(3).str("BlockRemoved").arr(1).str("h").nil().u(0).b,
		"huge count":    append((&mp{}).arr(3).f64(1).b, 0xdd, 0xff, 0xff, 0xff, 0xff),
	}
	var d Decoder
	b := Batch{Events: make([]Event, 0, 4)}
	for name, p := range cases {
		if err := d.Decode(p, &b); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, b)
		} else if len(b.Events) != 0 {
			t.Errorf("%s: failed decode left %d events", name, len(b.Events))
		}
	}
	d.Limits.MaxEvents = 1
	if err := d.Decode((&mp{}).arr(2).f64(1).arr(2).arr(1).str("AllBlocksCleared").arr(1).str("AllBlocksCleared").b, &b); err == nil {
		t.Error("MaxEvents not enforced")
	}
}

func TestRoundTripAndReuse(t *testing.T) {
	in := Batch{TS: 12.25, DPRank: -1, Events: []Event{
		{Kind: BlockStored, BlockHashes: []uint64{1, 1 << 63}, ParentHash: 42, HasParent: true, TokenIDs: []uint32{1, 2, 3, 4}, BlockSize: 2, LoRAName: "a", LoRAID: 7, Medium: "CPU"},
		{Kind: BlockRemoved, BlockHashes: []uint64{3}},
		{Kind: AllBlocksCleared},
	}}
	p := AppendBatch(nil, &in)
	var d Decoder
	var out Batch
	for range 2 { // the second decode reuses the first one's slices
		if err := d.Decode(p, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("round trip\n%+v\nwant\n%+v", out, in)
		}
	}
	if allocs := testing.AllocsPerRun(20, func() { _ = d.Decode(p, &out) }); allocs > 2 {
		// lora_name and medium become strings; nothing else allocates once warm.
		t.Fatalf("warm decode allocates %v times", allocs)
	}
}

func TestFraming(t *testing.T) {
	topic, seq, payload, err := ParseMessage([][]byte{[]byte("kv@pod@model"), AppendSeq(nil, 258), {1}})
	if err != nil || string(topic) != "kv@pod@model" || seq != 258 || !bytes.Equal(payload, []byte{1}) {
		t.Fatal(topic, seq, payload, err)
	}
	if s, _ := ParseSeq(AppendSeq(nil, EndOfReplay)); s != EndOfReplay {
		t.Fatal("end of replay")
	}
	for _, frames := range [][][]byte{{{1}}, {{1}, {1, 2}, {3}}} {
		if _, _, _, err := ParseMessage(frames); err == nil {
			t.Errorf("%v: want error", frames)
		}
	}
}

func TestBlockKeys(t *testing.T) {
	toks := []uint32{1, 2, 3, 4, 5, 6, 7}
	keys := AppendBlockKeys(nil, RootKey(""), toks, 2)
	if len(keys) != 3 {
		t.Fatalf("%d keys for 7 tokens in blocks of 2", len(keys))
	}
	// Chained: computing from the middle with the parent's key agrees.
	if tail := AppendBlockKeys(nil, keys[0], toks[2:], 2); !reflect.DeepEqual(tail, keys[1:]) {
		t.Fatalf("tail %x, want %x", tail, keys[1:])
	}
	if other := AppendBlockKeys(nil, RootKey("lora"), toks, 2); other[0] == keys[0] {
		t.Fatal("adapter does not change the root")
	}
	if diff := AppendBlockKeys(nil, RootKey(""), []uint32{1, 2, 3, 9}, 2); diff[0] != keys[0] || diff[1] == keys[1] {
		t.Fatal("keys do not follow the prefix")
	}
	long := make([]uint32, 1000)
	for i := range long {
		long[i] = uint32(i)
	}
	if a, b := AppendBlockKeys(nil, 1, long, 500), AppendBlockKeys(nil, 1, long, 500); !reflect.DeepEqual(a, b) || len(a) != 2 {
		t.Fatal("blocks longer than the write buffer")
	}
	dst := make([]uint64, 0, 8)
	if allocs := testing.AllocsPerRun(10, func() { dst = AppendBlockKeys(dst[:0], 1, toks, 2) }); allocs != 0 {
		t.Fatalf("AppendBlockKeys allocates %v", allocs)
	}
}
