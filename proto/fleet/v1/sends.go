package fleetv1

import (
	"fmt"
	"iter"
	"time"
)

// Limits of the fleet exchange both planes hold sends to: a proxy reports
// within them, and the control plane refuses a report beyond them whole.
// They keep every message well under gRPC's default 4 MiB.
const (
	// MaxSendsPerReport bounds the sends of one report, all pools
	// together, prefilled records included (a proxy's picker holds at
	// most 8,192 unreported sends per pool; reports go out up to 40 times
	// a second).
	MaxSendsPerReport = 1 << 16
	// MaxKeysPerReport bounds the chain keys of one report, all pools
	// together: 2 MiB of keys.
	MaxKeysPerReport = 1 << 18
	// MaxKeysPerSend bounds one send's chain keys: a key per block at
	// most, and the picker hashes at most 4,096 blocks of a prompt.
	MaxKeysPerSend = 4096
	// MaxPrefillTokens bounds one send's prefill tokens, and
	// MaxOutputTokens its expected output tokens (16M tokens are beyond any
	// model's context).
	MaxPrefillTokens = 1 << 24
	MaxOutputTokens  = 1 << 24
	// MaxSendAge bounds a send's age: the control plane holds sends for
	// minutes at most, and a proxy reports within a second.
	MaxSendAge = 10 * time.Minute
)

// checkSends checks a report's sends: valid pool names and columns, and
// within the report's limits.
func checkSends(ps []*PoolSends) error {
	if len(ps) > MaxPoolsPerReport {
		return fmt.Errorf("report has sends of %d pools, at most %d", len(ps), MaxPoolsPerReport)
	}
	sends, keys := 0, 0
	for _, p := range ps {
		if p.GetPool() == "" || len(p.GetPool()) > MaxPoolNameBytes {
			return fmt.Errorf("sends of pool %q: want a pool name of 1 to %d bytes", p.GetPool(), MaxPoolNameBytes)
		}
		if err := p.Check(); err != nil {
			return fmt.Errorf("sends of pool %s: %w", p.GetPool(), err)
		}
		sends += p.Len() + p.PrefilledLen()
		keys += len(p.GetKeys())
	}
	if sends > MaxSendsPerReport || keys > MaxKeysPerReport {
		return fmt.Errorf("report has %d sends and %d keys, at most %d and %d", sends, keys, MaxSendsPerReport, MaxKeysPerReport)
	}
	return nil
}

// Len is the number of sends in p.
func (p *PoolSends) Len() int { return len(p.GetEndpoints()) }

// Check reports why p's columns do not describe a list of sends: one
// endpoint and one key count per send, the counts adding up to the keys,
// none above MaxKeysPerSend; prefill tokens, output tokens and ages, when
// present, one per send and within MaxPrefillTokens, MaxOutputTokens and
// MaxSendAge.
func (p *PoolSends) Check() error {
	n := len(p.GetEndpoints())
	if n != len(p.GetKeyCounts()) {
		return fmt.Errorf("%d endpoints but %d key counts", n, len(p.GetKeyCounts()))
	}
	total := 0
	for i, k := range p.GetKeyCounts() {
		if k > MaxKeysPerSend {
			return fmt.Errorf("send %d has %d keys, at most %d", i, k, MaxKeysPerSend)
		}
		total += int(k)
	}
	if total != len(p.GetKeys()) {
		return fmt.Errorf("key counts add up to %d but there are %d keys", total, len(p.GetKeys()))
	}
	if c := len(p.GetPrefillTokens()); c != 0 && c != n {
		return fmt.Errorf("%d endpoints but %d prefill token counts", n, c)
	}
	if c := len(p.GetAgeMs()); c != 0 && c != n {
		return fmt.Errorf("%d endpoints but %d ages", n, c)
	}
	if c := len(p.GetOutputTokens()); c != 0 && c != n {
		return fmt.Errorf("%d endpoints but %d output token counts", n, c)
	}
	for i, t := range p.GetOutputTokens() {
		if t > MaxOutputTokens {
			return fmt.Errorf("send %d expects %d output tokens, at most %d", i, t, MaxOutputTokens)
		}
	}
	for i, t := range p.GetPrefillTokens() {
		if t > MaxPrefillTokens {
			return fmt.Errorf("send %d queued %d prefill tokens, at most %d", i, t, MaxPrefillTokens)
		}
	}
	for i, a := range p.GetAgeMs() {
		if time.Duration(a)*time.Millisecond > MaxSendAge {
			return fmt.Errorf("send %d is %d ms old, at most %v", i, a, MaxSendAge)
		}
	}
	return p.checkPrefilled()
}

// checkPrefilled checks the prefilled columns: one count and one age per
// endpoint, within MaxPrefillTokens and MaxSendAge.
func (p *PoolSends) checkPrefilled() error {
	n := p.PrefilledLen()
	if c := len(p.GetPrefilledTokens()); c != n {
		return fmt.Errorf("%d prefilled endpoints but %d token counts", n, c)
	}
	if c := len(p.GetPrefilledAgeMs()); c != n {
		return fmt.Errorf("%d prefilled endpoints but %d ages", n, c)
	}
	for i, t := range p.GetPrefilledTokens() {
		if t > MaxPrefillTokens {
			return fmt.Errorf("prefilled %d has %d tokens, at most %d", i, t, MaxPrefillTokens)
		}
	}
	for i, a := range p.GetPrefilledAgeMs() {
		if time.Duration(a)*time.Millisecond > MaxSendAge {
			return fmt.Errorf("prefilled %d is %d ms old, at most %v", i, a, MaxSendAge)
		}
	}
	return nil
}

// PrefilledLen is the number of prefilled records in p.
func (p *PoolSends) PrefilledLen() int { return len(p.GetPrefilledEndpoints()) }

// Prefilled is one prefilled record of a PoolSends: Tokens of the
// endpoint's prefill backlog were done Age before the message was built
// (the endpoint answered the first token of the request whose prompt
// they were).
type Prefilled struct {
	Endpoint uint64
	Tokens   uint32
	Age      time.Duration
}

// AllPrefilled yields each prefilled record, oldest first. It yields
// nothing for a PoolSends that fails Check.
func (p *PoolSends) AllPrefilled() iter.Seq[Prefilled] {
	return func(yield func(Prefilled) bool) {
		if p.Check() != nil {
			return
		}
		tokens, ages := p.GetPrefilledTokens(), p.GetPrefilledAgeMs()
		for i, ep := range p.GetPrefilledEndpoints() {
			if !yield(Prefilled{Endpoint: ep, Tokens: tokens[i], Age: time.Duration(ages[i]) * time.Millisecond}) {
				return
			}
		}
	}
}

// AddPrefilled appends d (its tokens capped at MaxPrefillTokens, its age
// clamped to 0..MaxSendAge).
func (p *PoolSends) AddPrefilled(d Prefilled) {
	p.PrefilledEndpoints = append(p.PrefilledEndpoints, d.Endpoint)
	p.PrefilledTokens = append(p.PrefilledTokens, min(d.Tokens, MaxPrefillTokens))
	p.PrefilledAgeMs = append(p.PrefilledAgeMs, ageMs(d.Age))
}

// ageMs is an age as the columns carry it: whole milliseconds within
// 0..MaxSendAge.
func ageMs(age time.Duration) uint32 {
	return uint32(min(max(age, 0), MaxSendAge) / time.Millisecond)
}

// Sent is one send of a PoolSends.
type Sent struct {
	Endpoint uint64
	// Keys are a window of the message's keys (copy them to keep them).
	Keys []uint64
	// Prefill is the prompt tokens the send queued for prefill (0: none,
	// or not said).
	Prefill uint32
	// Output is the output tokens the sender expected (0: none, or not
	// said).
	Output uint32
	// Age is how long before the message was built the send was made (0:
	// not said).
	Age time.Duration
}

// All yields each send, oldest first. It yields nothing for a PoolSends
// that fails Check.
func (p *PoolSends) All() iter.Seq[Sent] {
	return func(yield func(Sent) bool) {
		if p.Check() != nil {
			return
		}
		keys, prefill, output, ages := p.GetKeys(), p.GetPrefillTokens(), p.GetOutputTokens(), p.GetAgeMs()
		off := 0
		for i, ep := range p.GetEndpoints() {
			n := int(p.GetKeyCounts()[i])
			s := Sent{Endpoint: ep, Keys: keys[off : off+n : off+n]}
			if len(prefill) > 0 {
				s.Prefill = prefill[i]
			}
			if len(output) > 0 {
				s.Output = output[i]
			}
			if len(ages) > 0 {
				s.Age = time.Duration(ages[i]) * time.Millisecond
			}
			if !yield(s) {
				return
			}
			off += n
		}
	}
}

// Add appends s (its prefill and output capped at MaxPrefillTokens and
// MaxOutputTokens, its age clamped to 0..MaxSendAge); the prefill, output
// and age columns are always written.
func (p *PoolSends) Add(s Sent) {
	p.Endpoints = append(p.Endpoints, s.Endpoint)
	p.KeyCounts = append(p.KeyCounts, uint32(len(s.Keys)))
	p.Keys = append(p.Keys, s.Keys...)
	p.PrefillTokens = append(p.PrefillTokens, min(s.Prefill, MaxPrefillTokens))
	p.OutputTokens = append(p.OutputTokens, min(s.Output, MaxOutputTokens))
	p.AgeMs = append(p.AgeMs, ageMs(s.Age))
}
