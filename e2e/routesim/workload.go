package routesim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

// Workload is a list of jobs, open loop (arrival times and dependencies)
// or, with Concurrency > 0, a closed loop of that many users each sending
// the next job when their previous one ends.
type Workload struct {
	Name        string
	Jobs        []Job
	Concurrency int
}

// FromLoadgen converts a benchmark workload (classes become priorities as
// the benchmark's objectives map them).
func FromLoadgen(w loadgen.Workload) Workload {
	out := Workload{Name: w.Name, Concurrency: w.Concurrency}
	for _, r := range w.Requests {
		var prio int32
		switch r.Class {
		case "critical":
			prio = 1
		case "sheddable":
			prio = -1
		}
		out.Jobs = append(out.Jobs, Job{At: r.At, After: -1, Model: r.Model, Body: r.Body, Priority: prio, MaxTokens: r.MaxTokens})
	}
	return out
}

// words is filler vocabulary; the simulator counts 4 bytes as a token.
var words = strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike
november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu one two three four five
six seven eight nine zero red green blue black white orange purple yellow brown grey silver gold`)

func text(rng *rand.Rand, chars int) string {
	var b strings.Builder
	for b.Len() < chars {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:chars]
}

type message struct{ role, content string }

func chat(model string, msgs []message, maxTokens int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"model":%s,"messages":[`, strconv.Quote(model))
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":%q,"content":%s}`, m.role, strconv.Quote(m.content))
	}
	fmt.Fprintf(&b, `],"max_tokens":%d,"stream":true}`, maxTokens)
	return []byte(b.String())
}

func poisson(rng *rand.Rand, rate float64, d time.Duration) []time.Duration {
	var out []time.Duration
	for t := rng.ExpFloat64() / rate; t < d.Seconds(); t += rng.ExpFloat64() / rate {
		out = append(out, time.Duration(t*float64(time.Second)))
	}
	return out
}

// MultiTurnConfig shapes conversations under one shared system prompt.
type MultiTurnConfig struct {
	Model                    string
	SystemTokens             int
	Conversations, Turns     int
	UserTokens, AnswerTokens int
	Rate                     float64 // new conversations per second
	Think                    time.Duration
	Seed                     uint64
}

// MultiTurn: conversations start as a Poisson process; each turn re-sends
// the whole history (system prompt, every earlier question and answer)
// plus a new question, a think time after the previous turn ended.
func MultiTurn(c MultiTurnConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 11))
	sys := "You are the support assistant. " + text(rng, c.SystemTokens*4)
	w := Workload{Name: "multi-turn"}
	t := 0.0
	for conv := range c.Conversations {
		t += rng.ExpFloat64() / c.Rate
		hist := []message{{"system", sys}}
		prev := -1
		for turn := range c.Turns {
			q := fmt.Sprintf("conversation %d turn %d: ", conv, turn) + text(rng, c.UserTokens*4)
			hist = append(hist, message{"user", q})
			j := Job{After: prev, Model: c.Model, MaxTokens: c.AnswerTokens, Body: chat(c.Model, hist, c.AnswerTokens)}
			if prev < 0 {
				j.At = time.Duration(t * float64(time.Second))
			} else {
				j.Delay = time.Duration((0.5 + rng.Float64()) * float64(c.Think))
			}
			prev = len(w.Jobs)
			w.Jobs = append(w.Jobs, j)
			hist = append(hist, message{"assistant", text(rng, c.AnswerTokens*4)})
		}
	}
	return w
}

// ZipfConfig shapes requests over many prefixes of skewed popularity.
type ZipfConfig struct {
	Name                     string
	Model                    string
	Prefixes                 int
	S                        float64 // Zipf exponent (> 1 for rand.Zipf)
	PrefixTokens, UserTokens int
	Output                   int
	Rate                     float64
	Duration                 time.Duration
	Seed                     uint64
}

// Zipf: each request is a unique question under one of Prefixes system
// prompts drawn with Zipf popularity, so the top prefixes carry a large
// share of the traffic.
func Zipf(c ZipfConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 12))
	z := rand.NewZipf(rand.New(rand.NewPCG(c.Seed, 13)), c.S, 1, uint64(c.Prefixes-1))
	sys := make([]string, c.Prefixes)
	for i := range sys {
		sys[i] = fmt.Sprintf("Prefix %d. ", i) + text(rng, c.PrefixTokens*4)
	}
	w := Workload{Name: c.Name}
	for i, at := range poisson(rng, c.Rate, c.Duration) {
		p := z.Uint64()
		q := fmt.Sprintf("request %d: ", i) + text(rng, c.UserTokens*4)
		w.Jobs = append(w.Jobs, Job{At: at, After: -1, Model: c.Model, MaxTokens: c.Output,
			Body: chat(c.Model, []message{{"system", sys[p]}, {"user", q}}, c.Output)})
	}
	return w
}
