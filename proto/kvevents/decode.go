package kvevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tinylib/msgp/msgp"
)

// Limits bound what one payload may make the decoder hold. A payload over
// a limit is refused whole.
type Limits struct {
	// MaxEvents per batch (default 65,536).
	MaxEvents int
	// MaxBlocks per event (default 65,536).
	MaxBlocks int
	// MaxTokens per event (default 1<<20).
	MaxTokens int
}

func (l Limits) withDefaults() Limits {
	if l.MaxEvents <= 0 {
		l.MaxEvents = 1 << 16
	}
	if l.MaxBlocks <= 0 {
		l.MaxBlocks = 1 << 16
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = 1 << 20
	}
	return l
}

// Decoder decodes payloads into a reused Batch.
type Decoder struct {
	Limits Limits
}

// Decode parses payload into b (reusing its slices). On error b holds no
// events: a batch is applied whole or not at all.
func (d *Decoder) Decode(payload []byte, b *Batch) error {
	b.Reset()
	err := d.decode(payload, b)
	if err != nil {
		b.Reset()
	}
	return err
}

func (d *Decoder) decode(p []byte, b *Batch) error {
	lim := d.Limits.withDefaults()
	var err error
	switch msgp.NextType(p) {
	case msgp.ArrayType:
		var n uint32
		if n, p, err = msgp.ReadArrayHeaderBytes(p); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		if n < 2 {
			return fmt.Errorf("batch: array of %d fields, want [ts, events, data_parallel_rank?]", n)
		}
		if b.TS, p, err = readFloat(p); err != nil {
			return fmt.Errorf("batch ts: %w", err)
		}
		if p, err = d.events(p, b, lim); err != nil {
			return err
		}
		for i := uint32(2); i < n; i++ {
			if i == 2 {
				if b.DPRank, p, err = readOptRank(p); err != nil {
					return fmt.Errorf("batch data_parallel_rank: %w", err)
				}
				continue
			}
			if p, err = msgp.Skip(p); err != nil {
				return fmt.Errorf("batch field %d: %w", i, err)
			}
		}
	case msgp.MapType:
		var n uint32
		if n, p, err = msgp.ReadMapHeaderBytes(p); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		seen := false
		for range n {
			var key []byte
			if key, p, err = msgp.ReadStringZC(p); err != nil {
				return fmt.Errorf("batch key: %w", err)
			}
			switch string(key) {
			case "ts":
				b.TS, p, err = readFloat(p)
			case "events":
				seen = true
				p, err = d.events(p, b, lim)
			case "data_parallel_rank":
				b.DPRank, p, err = readOptRank(p)
			default:
				p, err = msgp.Skip(p)
			}
			if err != nil {
				return fmt.Errorf("batch %s: %w", key, err)
			}
		}
		if !seen {
			return errors.New("batch: no events field")
		}
	default:
		return fmt.Errorf("batch: want a msgpack array or map, got %s", msgp.NextType(p))
	}
	if len(p) != 0 {
		return fmt.Errorf("batch: %d trailing bytes", len(p))
	}
	return nil
}

func (d *Decoder) events(p []byte, b *Batch, lim Limits) ([]byte, error) {
	n, p, err := msgp.ReadArrayHeaderBytes(p)
	if err != nil {
		return p, fmt.Errorf("events: %w", err)
	}
	if int64(n) > int64(lim.MaxEvents) || int(n) > len(p) {
		return p, fmt.Errorf("events: %d in one batch (limit %d, %d bytes left)", n, lim.MaxEvents, len(p))
	}
	for i := range int(n) {
		if len(b.Events) < cap(b.Events) {
			b.Events = b.Events[:len(b.Events)+1]
		} else {
			b.Events = append(b.Events, Event{})
		}
		e := &b.Events[len(b.Events)-1]
		if p, err = decodeEvent(p, e, lim); err != nil {
			return p, fmt.Errorf("event %d: %w", i, err)
		}
	}
	return p, nil
}

// Field order of the array (legacy, array_like) form after the tag.
var (
	storedFields  = []string{"block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name"}
	removedFields = []string{"block_hashes", "medium"}
)

func decodeEvent(p []byte, e *Event, lim Limits) ([]byte, error) {
	var err error
	switch msgp.NextType(p) {
	case msgp.ArrayType:
		var n uint32
		if n, p, err = msgp.ReadArrayHeaderBytes(p); err != nil {
			return p, err
		}
		if n == 0 {
			return p, errors.New("empty array: no tag")
		}
		var tag []byte
		if tag, p, err = msgp.ReadStringZC(p); err != nil {
			return p, fmt.Errorf("tag: %w", err)
		}
		if e.Kind, err = kindOf(tag); err != nil {
			return p, err
		}
		var names []string
		switch e.Kind {
		case BlockStored:
			names = storedFields
		case BlockRemoved:
			names = removedFields
		}
		for i := range int(n - 1) {
			if i >= len(names) {
				// Fields added after lora_name (extra_keys, group_idx, ...).
				if p, err = msgp.Skip(p); err != nil {
					return p, err
				}
				continue
			}
			if p, err = field(p, names[i], e, lim); err != nil {
				return p, fmt.Errorf("%s: %w", names[i], err)
			}
		}
	case msgp.MapType:
		var n uint32
		if n, p, err = msgp.ReadMapHeaderBytes(p); err != nil {
			return p, err
		}
		// The tag may come anywhere in the map; fields are read into e and
		// checked against the kind once it is known.
		for range n {
			var key []byte
			if key, p, err = msgp.ReadStringZC(p); err != nil {
				return p, fmt.Errorf("key: %w", err)
			}
			if string(key) == "type" {
				var tag []byte
				if tag, p, err = msgp.ReadStringZC(p); err != nil {
					return p, fmt.Errorf("type: %w", err)
				}
				if e.Kind, err = kindOf(tag); err != nil {
					return p, err
				}
				continue
			}
			if p, err = field(p, string(key), e, lim); err != nil {
				return p, fmt.Errorf("%s: %w", key, err)
			}
		}
		if e.Kind == 0 {
			return p, errors.New(`map without a "type" tag`)
		}
	default:
		return p, fmt.Errorf("want a tagged array or map, got %s", msgp.NextType(p))
	}
	return p, check(e)
}

func kindOf(tag []byte) (Kind, error) {
	switch string(tag) {
	case "BlockStored":
		return BlockStored, nil
	case "BlockRemoved":
		return BlockRemoved, nil
	case "AllBlocksCleared":
		return AllBlocksCleared, nil
	}
	return 0, fmt.Errorf("unknown event tag %q", tag)
}

// check validates an event's fields against its kind.
func check(e *Event) error {
	switch e.Kind {
	case BlockStored:
		if len(e.BlockHashes) == 0 {
			return errors.New("BlockStored without block_hashes")
		}
		if e.BlockSize <= 0 {
			return fmt.Errorf("BlockStored with block_size %d", e.BlockSize)
		}
		if len(e.TokenIDs) != len(e.BlockHashes)*e.BlockSize {
			return fmt.Errorf("BlockStored with %d blocks of %d tokens but %d token_ids", len(e.BlockHashes), e.BlockSize, len(e.TokenIDs))
		}
	case BlockRemoved:
		if len(e.BlockHashes) == 0 {
			return errors.New("BlockRemoved without block_hashes")
		}
	}
	return nil
}

// field reads the value of one named field into e; unknown names are skipped.
func field(p []byte, name string, e *Event, lim Limits) ([]byte, error) {
	var err error
	switch name {
	case "block_hashes":
		var n uint32
		if n, p, err = msgp.ReadArrayHeaderBytes(p); err != nil {
			return p, err
		}
		if int64(n) > int64(lim.MaxBlocks) || int(n) > len(p) {
			return p, fmt.Errorf("%d hashes (limit %d)", n, lim.MaxBlocks)
		}
		for range n {
			var h uint64
			if h, p, err = readHash(p); err != nil {
				return p, err
			}
			e.BlockHashes = append(e.BlockHashes, h)
		}
	case "parent_block_hash":
		if msgp.NextType(p) == msgp.NilType {
			p, err = msgp.ReadNilBytes(p)
			e.HasParent = false
			return p, err
		}
		e.ParentHash, p, err = readHash(p)
		e.HasParent = err == nil
	case "token_ids":
		var n uint32
		if n, p, err = msgp.ReadArrayHeaderBytes(p); err != nil {
			return p, err
		}
		if int64(n) > int64(lim.MaxTokens) || int(n) > len(p) {
			return p, fmt.Errorf("%d tokens (limit %d)", n, lim.MaxTokens)
		}
		for range n {
			var t uint64
			if t, p, err = readUint(p); err != nil {
				return p, err
			}
			if t > math.MaxUint32 {
				return p, fmt.Errorf("token id %d out of range", t)
			}
			e.TokenIDs = append(e.TokenIDs, uint32(t))
		}
	case "block_size":
		var v uint64
		if v, p, err = readUint(p); err != nil {
			return p, err
		}
		if v == 0 || v > 1<<16 {
			return p, fmt.Errorf("%d out of range 1..65536", v)
		}
		e.BlockSize = int(v)
	case "lora_id":
		if msgp.NextType(p) == msgp.NilType {
			return msgp.ReadNilBytes(p)
		}
		e.LoRAID, p, err = msgp.ReadInt64Bytes(p)
	case "lora_name":
		e.LoRAName, p, err = readOptString(p)
	case "medium":
		e.Medium, p, err = readOptString(p)
	default:
		p, err = msgp.Skip(p)
	}
	return p, err
}

// readHash reads an ExternalBlockHash: an int, or bytes folded to their
// last 8 bytes read big-endian (as other consumers of vLLM's sha256
// hashes do; left-padded with zeros when shorter).
func readHash(p []byte) (uint64, []byte, error) {
	if msgp.NextType(p) == msgp.BinType {
		v, o, err := msgp.ReadBytesZC(p)
		if err != nil {
			return 0, o, err
		}
		if len(v) == 0 {
			return 0, o, errors.New("empty hash")
		}
		var buf [8]byte
		if len(v) >= 8 {
			copy(buf[:], v[len(v)-8:])
		} else {
			copy(buf[8-len(v):], v)
		}
		return binary.BigEndian.Uint64(buf[:]), o, nil
	}
	return readUint(p)
}

// readUint reads a non-negative integer in any msgpack integer encoding
// (msgspec writes the shortest; a negative one is an error).
func readUint(p []byte) (uint64, []byte, error) {
	switch msgp.NextType(p) {
	case msgp.UintType:
		return msgp.ReadUint64Bytes(p)
	case msgp.IntType:
		v, o, err := msgp.ReadInt64Bytes(p)
		if err == nil && v < 0 {
			return 0, o, fmt.Errorf("negative value %d", v)
		}
		return uint64(v), o, err
	}
	return 0, p, fmt.Errorf("want an integer, got %s", msgp.NextType(p))
}

func readFloat(p []byte) (float64, []byte, error) {
	switch msgp.NextType(p) {
	case msgp.Float64Type, msgp.Float32Type:
		return msgp.ReadFloat64Bytes(p)
	case msgp.IntType, msgp.UintType:
		v, o, err := msgp.ReadInt64Bytes(p)
		return float64(v), o, err
	}
	return 0, p, fmt.Errorf("want a number, got %s", msgp.NextType(p))
}

func readOptRank(p []byte) (int, []byte, error) {
	if msgp.NextType(p) == msgp.NilType {
		o, err := msgp.ReadNilBytes(p)
		return -1, o, err
	}
	v, o, err := readUint(p)
	if err == nil && v > 1<<16 {
		return -1, o, fmt.Errorf("rank %d out of range", v)
	}
	return int(v), o, err
}

func readOptString(p []byte) (string, []byte, error) {
	if msgp.NextType(p) == msgp.NilType {
		o, err := msgp.ReadNilBytes(p)
		return "", o, err
	}
	v, o, err := msgp.ReadStringZC(p)
	if err != nil {
		return "", o, err
	}
	if len(v) > 1024 {
		return "", o, fmt.Errorf("string of %d bytes (limit 1024)", len(v))
	}
	return string(v), o, nil
}
