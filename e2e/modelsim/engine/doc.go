// Package engine is the simulator's model-server engine: a continuous-batching
// scheduler (Core) over a paged KV cache with vLLM-style prefix caching and
// LoRA slots, priced by a CostModel in simulated time, and a driver (Engine)
// that runs a Core on one goroutine in scaled wall-clock time.
//
// Core has no clock and no goroutines, so tests can step it in pure simulated
// time; Engine adds the Clock, request submission and progress publication.
package engine
