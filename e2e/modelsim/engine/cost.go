package engine

import "time"

// CostModel prices one engine step. A step's simulated duration is
//
//	Overhead
//	+ PrefillOverhead            (only when the step contains prefill work)
//	+ PrefillToken × prompt tokens computed in the step
//	+ DecodeSeq    × sequences decoding one token in the step
//	+ ContextToken × tokens attended (KV context of every scheduled sequence)
//	+ LoRALoad     × adapters loaded before the step
//
// all multiplied by the engine's slow factor. DefaultCost is calibrated against
// the published reference profile of an 8B model on one H100 (see README.md).
type CostModel struct {
	Overhead        time.Duration
	PrefillOverhead time.Duration
	PrefillToken    time.Duration
	DecodeSeq       time.Duration
	ContextToken    time.Duration
	LoRALoad        time.Duration
}

// DefaultCost: a lone 1,000-token prompt gets its first token after
// 11+20+250+0.4 ≈ 281 ms; decode at batch 1 with ~1k context costs ≈ 11.9 ms per
// token and ≈ 25 ms at 16 sequences of ~1k context each (the "×2 under load").
func DefaultCost() CostModel {
	return CostModel{
		Overhead:        11 * time.Millisecond,
		PrefillOverhead: 20 * time.Millisecond,
		PrefillToken:    250 * time.Microsecond,
		DecodeSeq:       450 * time.Microsecond,
		ContextToken:    400 * time.Nanosecond,
		LoRALoad:        50 * time.Millisecond,
	}
}

// StepWork is what one step computes; it is priced by CostModel.Step.
type StepWork struct {
	PrefillTokens int
	DecodeSeqs    int
	ContextTokens int
	LoRALoads     int
}

// Step returns the simulated duration of one step doing w, scaled by slow (≥ 1
// slows the engine down; values ≤ 0 are treated as 1).
func (c CostModel) Step(w StepWork, slow float64) time.Duration {
	d := c.Overhead +
		time.Duration(w.PrefillTokens)*c.PrefillToken +
		time.Duration(w.DecodeSeqs)*c.DecodeSeq +
		time.Duration(w.ContextTokens)*c.ContextToken +
		time.Duration(w.LoRALoads)*c.LoRALoad
	if w.PrefillTokens > 0 {
		d += c.PrefillOverhead
	}
	if slow > 0 && slow != 1 {
		d = time.Duration(float64(d) * slow)
	}
	return d
}
