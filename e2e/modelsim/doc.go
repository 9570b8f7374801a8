// Package modelsim simulates vLLM-like model servers for tests and
// benchmarks: each Replica is an independent continuous-batching engine
// (package engine) behind an OpenAI-compatible HTTP API with vLLM's (or
// SGLang's / TRT-LLM's) Prometheus metrics, and a Fleet hosts many replicas
// in one process on loopback addresses. See README.md for the model, the
// calibration against a published H100 profile and the simulator's own cost.
package modelsim
