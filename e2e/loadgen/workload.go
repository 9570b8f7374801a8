// Package loadgen generates deterministic LLM workloads (prompts, arrival
// times, criticality) and replays them against OpenAI-compatible endpoints
// with streaming, measuring time to first token, inter-token latency,
// end-to-end latency, tokens and prefix-cache hits per request.
package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Request is one request of a workload.
type Request struct {
	// At is the arrival time, in simulated time from the workload start.
	At time.Duration
	// Model is the body's model (a LoRA adapter name in the LoRA workload).
	Model string
	// Body is the complete JSON chat request (streaming, with usage).
	Body []byte
	// Class is the criticality class ("critical", "standard", "sheddable"),
	// sent as the x-gateway-inference-objective header when set.
	Class string
	// MaxTokens is the number of tokens asked for.
	MaxTokens int
	// Session, when > 0, makes the request one turn of a conversation:
	// the first request of a session is sent at At, every later one
	// (higher index, same Session) Delay after the session's previous
	// request ended, whatever its outcome — a user reading an answer
	// before asking the next question. Its At is then ignored.
	// Workload.After resolves sessions to the index each request waits
	// for. 0: an independent request, sent at At.
	Session int
	// Delay is the think time (simulated) between the end of the
	// session's previous request and this one's send.
	Delay time.Duration
}

// Workload is a named, fixed-seed list of requests in arrival order.
type Workload struct {
	Name        string
	Description string
	Requests    []Request
	// Duration is the arrival window (simulated); 0 for a closed loop.
	Duration time.Duration
	// Concurrency > 0 replays the requests closed-loop instead of at their
	// arrival times: that many users each send their next request as soon
	// as the previous one ends. It measures what a fleet serves when it is
	// never short of work (throughput at saturation).
	Concurrency int
}

// ObjectiveHeader carries the request's InferenceObjective (criticality).
const ObjectiveHeader = "x-gateway-inference-objective"

// Header returns the request headers for r.
func (r *Request) Header() http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if r.Class != "" {
		h.Set(ObjectiveHeader, r.Class)
	}
	return h
}

// words is the vocabulary of generated text; the simulator's tokenizer
// counts 4 characters as a token, so only lengths matter.
var words = strings.Fields(`the of and to in is that for it as with was on be by at this from
or have an are not but which one all were when we there can more if out so what up about into
than them some could time these two may first then do any like my now over such our man me even
most made after also did many before must through back years where much your way well down
should because each just those people how too little state good very make world still own see
men work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three`)

// text returns about n characters of deterministic text from rng.
func text(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 16)
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

// chatBody renders a streaming chat request with a system and a user
// message; tokens are 4 characters in the simulator.
func chatBody(model, system, user string, maxTokens int) []byte {
	var msgs []message
	if system != "" {
		msgs = append(msgs, message{"system", system})
	}
	return chatRequest(model, append(msgs, message{"user", user}), maxTokens)
}

// message is one chat message.
type message struct{ role, content string }

// chatRequest renders a streaming chat request of msgs.
func chatRequest(model string, msgs []message, maxTokens int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":`)
	b.WriteString(strconv.Quote(model))
	b.WriteString(`,"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":%s,"content":%s}`, strconv.Quote(m.role), strconv.Quote(m.content))
	}
	fmt.Fprintf(&b, `],"max_tokens":%d,"stream":true,"stream_options":{"include_usage":true}}`, maxTokens)
	return []byte(b.String())
}

// poisson returns arrival times of a Poisson process whose rate ramps
// linearly from r0 to r1 requests per second over d.
func poisson(rng *rand.Rand, r0, r1 float64, d time.Duration) []time.Duration {
	var out []time.Duration
	if d <= 0 || r0 <= 0 && r1 <= 0 {
		return nil // no window or no rate: no arrivals (and no NaN loop)
	}
	t := 0.0
	end := d.Seconds()
	for {
		rate := r0 + (r1-r0)*math.Min(t/end, 1)
		t += rng.ExpFloat64() / rate
		if t >= end {
			return out
		}
		out = append(out, time.Duration(t*float64(time.Second)))
	}
}

// SharedPrefixConfig shapes the shared-prefix workload.
type SharedPrefixConfig struct {
	Groups, UsersPerGroup        int
	SystemTokens, QuestionTokens int
	OutputTokens                 int
	StartRate, EndRate           float64 // requests per simulated second
	Duration                     time.Duration
	// Concurrency > 0 makes a closed-loop workload of Requests requests
	// instead (rates and duration unused).
	Concurrency, Requests int
	Seed                  uint64
}

// SharedPrefix is the workload of the reference picker's published
// benchmark: groups of users share a long system prompt; every request is
// one user's question under its group's prompt.
func SharedPrefix(model string, c SharedPrefixConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 1))
	systems := make([]string, c.Groups)
	for i := range systems {
		systems[i] = fmt.Sprintf("You are assistant %d. ", i) + text(rng, c.SystemTokens*4)
	}
	shape := fmt.Sprintf("%d groups × %d users, %d-token system prompt per group, %d-token question, %d-token answer",
		c.Groups, c.UsersPerGroup, c.SystemTokens, c.QuestionTokens, c.OutputTokens)
	w := Workload{Name: "shared-prefix", Duration: c.Duration, Description: fmt.Sprintf(
		"%s, Poisson arrivals ramped %.1f→%.1f req/s over %s (simulated)", shape, c.StartRate, c.EndRate, c.Duration)}
	var arrivals []time.Duration
	if c.Concurrency > 0 {
		w = Workload{Name: "shared-prefix-saturated", Concurrency: c.Concurrency, Description: fmt.Sprintf(
			"%s, closed loop: %d users each send their next request when the previous ends", shape, c.Concurrency)}
		arrivals = make([]time.Duration, c.Requests)
	} else {
		arrivals = poisson(rng, c.StartRate, c.EndRate, c.Duration)
	}
	for _, at := range arrivals {
		g := rng.IntN(c.Groups)
		u := rng.IntN(c.UsersPerGroup)
		q := fmt.Sprintf("user %d asks: ", u) + text(rng, c.QuestionTokens*4)
		w.Requests = append(w.Requests, Request{At: at, Model: model, MaxTokens: c.OutputTokens,
			Body: chatBody(model, systems[g], q, c.OutputTokens)})
	}
	return w
}

// MixedConfig shapes the mixed-lengths workload.
type MixedConfig struct {
	MinPrompt, MaxPrompt int // tokens, log-uniform
	MinOutput, MaxOutput int
	Rate                 float64
	Duration             time.Duration
	Seed                 uint64
}

// Mixed sends unique prompts of log-uniform lengths: no sharing at all, so
// only load balancing matters.
func Mixed(model string, c MixedConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 2))
	w := Workload{Name: "mixed", Duration: c.Duration, Description: fmt.Sprintf(
		"unique prompts %d–%d tokens and outputs %d–%d tokens (log-uniform), Poisson %.1f req/s over %s",
		c.MinPrompt, c.MaxPrompt, c.MinOutput, c.MaxOutput, c.Rate, c.Duration)}
	logU := func(lo, hi int) int {
		return int(math.Exp(math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
	}
	for i, at := range poisson(rng, c.Rate, c.Rate, c.Duration) {
		out := logU(c.MinOutput, c.MaxOutput)
		// The request number leads so that no two prompts share a block.
		p := fmt.Sprintf("request %d: ", i) + text(rng, logU(c.MinPrompt, c.MaxPrompt)*4)
		w.Requests = append(w.Requests, Request{At: at, Model: model, MaxTokens: out, Body: chatBody(model, "", p, out)})
	}
	return w
}

// LoRAConfig shapes the LoRA workload.
type LoRAConfig struct {
	Adapters             []string
	PromptTokens, Output int
	Rate                 float64
	Duration             time.Duration
	Seed                 uint64
}

// LoRA spreads requests uniformly over the adapters with unique prompts.
func LoRA(c LoRAConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 3))
	w := Workload{Name: "lora", Duration: c.Duration, Description: fmt.Sprintf(
		"%d LoRA adapters (uniform), unique %d-token prompts, %d-token answers, Poisson %.1f req/s over %s",
		len(c.Adapters), c.PromptTokens, c.Output, c.Rate, c.Duration)}
	for i, at := range poisson(rng, c.Rate, c.Rate, c.Duration) {
		a := c.Adapters[rng.IntN(len(c.Adapters))]
		p := fmt.Sprintf("request %d: ", i) + text(rng, c.PromptTokens*4)
		w.Requests = append(w.Requests, Request{At: at, Model: a, MaxTokens: c.Output, Body: chatBody(a, "", p, c.Output)})
	}
	return w
}

// OverloadConfig shapes the overload workload.
type OverloadConfig struct {
	PromptTokens, Output int
	Rate                 float64
	Duration             time.Duration
	// Fractions of critical and sheddable requests; the rest are standard.
	Critical, Sheddable float64
	Seed                uint64
}

// Overload sends more than the fleet can serve, with a criticality mix.
func Overload(model string, c OverloadConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 4))
	w := Workload{Name: "overload", Duration: c.Duration, Description: fmt.Sprintf(
		"unique %d-token prompts, %d-token answers, Poisson %.1f req/s over %s; %.0f%% critical, %.0f%% standard, %.0f%% sheddable",
		c.PromptTokens, c.Output, c.Rate, c.Duration, 100*c.Critical, 100*(1-c.Critical-c.Sheddable), 100*c.Sheddable)}
	for i, at := range poisson(rng, c.Rate, c.Rate, c.Duration) {
		cls := "standard"
		switch x := rng.Float64(); {
		case x < c.Critical:
			cls = "critical"
		case x < c.Critical+c.Sheddable:
			cls = "sheddable"
		}
		p := fmt.Sprintf("request %d: ", i) + text(rng, c.PromptTokens*4)
		w.Requests = append(w.Requests, Request{At: at, Model: model, MaxTokens: c.Output, Class: cls, Body: chatBody(model, "", p, c.Output)})
	}
	return w
}
