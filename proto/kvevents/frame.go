package kvevents

import (
	"encoding/binary"
	"fmt"
)

// EndOfReplay is the sequence number that ends a replay answer.
const EndOfReplay = ^uint64(0)

// AppendSeq appends seq as the 8-byte big-endian frame vLLM uses.
func AppendSeq(dst []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(dst, seq) }

// ParseSeq reads a sequence frame.
func ParseSeq(frame []byte) (uint64, error) {
	if len(frame) != 8 {
		return 0, fmt.Errorf("sequence frame has %d bytes, want 8", len(frame))
	}
	return binary.BigEndian.Uint64(frame), nil
}

// ParseMessage splits a published message [topic, seq, payload].
func ParseMessage(frames [][]byte) (topic []byte, seq uint64, payload []byte, err error) {
	if len(frames) != 3 {
		return nil, 0, nil, fmt.Errorf("message has %d frames, want 3 (topic, sequence, payload)", len(frames))
	}
	seq, err = ParseSeq(frames[1])
	if err != nil {
		return nil, 0, nil, err
	}
	return frames[0], seq, frames[2], nil
}
