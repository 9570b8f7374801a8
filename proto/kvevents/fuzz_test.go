package kvevents

import (
	"reflect"
	"testing"
)

// FuzzDecode: any payload decodes or fails without panicking, and what
// decodes re-encodes to a payload that decodes to the same batch.
func FuzzDecode(f *testing.F) {
	f.Add(vllm026())
	p, _, _ := vllmArrayForm()
	f.Add(p)
	f.Add(AppendBatch(nil, &Batch{DPRank: -1, Events: []Event{{Kind: BlockRemoved, BlockHashes: []uint64{1}}, {Kind: AllBlocksCleared}}}))
	f.Add([]byte{0x92, 0x00, 0x90})
	f.Fuzz(func(t *testing.T, payload []byte) {
		d := Decoder{Limits: Limits{MaxEvents: 64, MaxBlocks: 64, MaxTokens: 4096}}
		var b Batch
		if err := d.Decode(payload, &b); err != nil {
			return
		}
		for _, e := range b.Events {
			if e.Kind == BlockStored && len(e.TokenIDs) != len(e.BlockHashes)*e.BlockSize {
				t.Fatalf("accepted inconsistent event %+v", e)
			}
		}
		var again Batch
		if err := d.Decode(AppendBatch(nil, &b), &again); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		for i := range b.Events {
			// The map form keeps every field the decoder keeps.
			if !reflect.DeepEqual(b.Events[i], again.Events[i]) {
				t.Fatalf("event %d: %+v became %+v", i, b.Events[i], again.Events[i])
			}
		}
	})
}
