package modelsim

import "fmt"

// ReplicaOverride changes one replica of a fleet from the fleet's Config,
// to simulate a heterogeneous fleet (older GPUs, smaller cache). Zero
// fields keep the fleet's value.
type ReplicaOverride struct {
	// SlowFactor multiplies the replica's step durations (> 1: slower).
	SlowFactor float64
	// KVBlocks and MaxNumSeqs size the replica's KV cache and batch.
	KVBlocks, MaxNumSeqs int
}

// replicaConfig is replica i's configuration: the fleet's with
// Overrides[i] applied when there is one.
func (fc FleetConfig) replicaConfig(i int, c Config) (Config, error) {
	if i >= len(fc.Overrides) {
		return c, nil
	}
	o := fc.Overrides[i]
	if o.SlowFactor < 0 || o.KVBlocks < 0 || o.MaxNumSeqs < 0 {
		return c, fmt.Errorf("replica %d override %+v: values must not be negative", i, o)
	}
	if o.SlowFactor > 0 {
		c.SlowFactor = o.SlowFactor
	}
	if o.KVBlocks > 0 {
		c.EngineConfig.KVBlocks = o.KVBlocks
	}
	if o.MaxNumSeqs > 0 {
		c.EngineConfig.MaxNumSeqs = o.MaxNumSeqs
	}
	return c, nil
}
