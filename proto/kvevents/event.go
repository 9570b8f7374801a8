package kvevents

// Kind says what an Event reports.
type Kind uint8

// Event kinds, named by vLLM's tags.
const (
	BlockStored Kind = iota + 1
	BlockRemoved
	AllBlocksCleared
)

var kindTags = [...]string{BlockStored: "BlockStored", BlockRemoved: "BlockRemoved", AllBlocksCleared: "AllBlocksCleared"}

func (k Kind) String() string {
	if int(k) < len(kindTags) && kindTags[k] != "" {
		return kindTags[k]
	}
	return "Unknown"
}

// Event is one KV-cache event. Fields a kind does not carry stay zero.
type Event struct {
	Kind Kind
	// BlockHashes are the engine's hashes of the blocks stored or removed,
	// in prefix order.
	BlockHashes []uint64
	// ParentHash is the engine hash of the block before the first stored
	// one; HasParent is false for a chain starting at the root.
	ParentHash uint64
	HasParent  bool
	// TokenIDs are the tokens of the stored blocks, BlockSize per block.
	TokenIDs  []uint32
	BlockSize int
	// LoRAName is the adapter whose KV the blocks hold ("" for the base
	// model); LoRAID is vLLM's deprecated integer id (0: none).
	LoRAName string
	LoRAID   int64
	// Medium is where the blocks live ("GPU", "CPU", ...; "" when not said).
	Medium string
}

// Batch is one published payload.
type Batch struct {
	// TS is the engine's wall clock (seconds since the epoch) when it was made.
	TS     float64
	Events []Event
	// DPRank is the data-parallel rank that published it (-1: not said).
	DPRank int
}

// Reset empties b, keeping its slices' capacity for the next decode.
func (b *Batch) Reset() {
	for i := range b.Events {
		e := &b.Events[i]
		*e = Event{BlockHashes: e.BlockHashes[:0], TokenIDs: e.TokenIDs[:0]}
	}
	b.Events = b.Events[:0]
	b.TS, b.DPRank = 0, -1
}
