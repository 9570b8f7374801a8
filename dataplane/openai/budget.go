package openai

import (
	"errors"
	"sync/atomic"
)

// ErrBudget is returned by ReadBodyWithin when buffering the body would
// take the proxy's buffered bodies past their global budget (HTTP 503:
// the request is fine, the proxy is full right now).
var ErrBudget = errors.New("buffered request bodies are at the proxy's memory budget")

// Budget bounds the memory of all request bodies buffered at once. The
// per-request limit (MaxBodyBytes) bounds one request; without a global
// bound, many concurrent large uploads (or slow ones, holding their
// buffers for the body read timeout) take as much memory as they like.
// A body reserves the capacity of its buffer before growing it and gives
// it back on Close. Safe for concurrent use.
type Budget struct {
	limit     int64
	used      atomic.Int64
	refusals  atomic.Int64
	peakUsage atomic.Int64
}

// NewBudget returns a budget of limit bytes; limit ≤ 0 means no bound
// (usage is still counted).
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Limit is the budget in bytes (≤ 0: unbounded).
func (b *Budget) Limit() int64 { return b.limit }

// Used is the capacity reserved by the bodies buffered now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Peak is the most ever reserved at once.
func (b *Budget) Peak() int64 { return b.peakUsage.Load() }

// Refusals counts the bodies refused for the budget.
func (b *Budget) Refusals() int64 { return b.refusals.Load() }

// reserve takes n bytes, or reports false (and counts a refusal) when
// that would exceed the limit.
func (b *Budget) reserve(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	for {
		old := b.used.Load()
		next := old + n
		if b.limit > 0 && next > b.limit {
			b.refusals.Add(1)
			return false
		}
		if b.used.CompareAndSwap(old, next) {
			for {
				p := b.peakUsage.Load()
				if next <= p || b.peakUsage.CompareAndSwap(p, next) {
					return true
				}
			}
		}
	}
}

// release gives back n reserved bytes.
func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}
