package loadgen

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// ConversationConfig shapes multi-turn chat: every conversation starts
// with the same long system prompt, and each turn sends the whole history
// (system prompt, earlier questions and answers) plus a new question.
type ConversationConfig struct {
	SystemTokens int
	// Conversations start as a Poisson process at StartRate per simulated
	// second over Duration.
	StartRate float64
	Duration  time.Duration
	// Turns per conversation, uniform in [MinTurns, MaxTurns].
	MinTurns, MaxTurns int
	UserTokens         Range
	AnswerTokens       Range
	// ThinkTime is the mean (exponential) pause between an answer's end
	// and the next question.
	ThinkTime time.Duration
	Seed      uint64
}

// Conversations generates multi-turn chat. Each conversation is a session
// (Request.Session): turn t+1 is sent ThinkTime on average after turn t
// ended, with turn t's answer in its history. The answers in the history
// are generated here (of the length asked for), not the server's, so the
// workload is fixed before it runs; a simulated server caches only prompt
// blocks, so what it would reuse is the same.
func Conversations(model string, c ConversationConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 8))
	system := "You are a helpful assistant. " + text(rng, c.SystemTokens*4)
	w := Workload{Name: "multi-turn", Duration: c.Duration}
	turns, convs := 0, 0
	for conv, at := range poisson(rng, c.StartRate, c.StartRate, c.Duration) {
		n := c.MinTurns + rng.IntN(max(c.MaxTurns-c.MinTurns+1, 1))
		msgs := []message{{"system", system}}
		for t := range n {
			q := fmt.Sprintf("conversation %d, question %d: ", conv, t) + text(rng, c.UserTokens.draw(rng)*4)
			msgs = append(msgs, message{"user", q})
			out := c.AnswerTokens.draw(rng)
			r := Request{Model: model, MaxTokens: out, Session: conv + 1, Body: chatRequest(model, msgs, out)}
			if t == 0 {
				r.At = at
			} else {
				r.Delay = expDuration(rng, c.ThinkTime)
			}
			w.Requests = append(w.Requests, r)
			msgs = append(msgs, message{"assistant", text(rng, out*4)})
		}
		turns += n
		convs++
	}
	w.Description = fmt.Sprintf("multi-turn chat under one shared %d-token system prompt: conversations start Poisson %.1f/s over %s, "+
		"%d–%d turns each (%.1f on average), %s-token questions, %s-token answers, the whole history resent every turn, "+
		"next question %s on average (exponential) after the answer",
		c.SystemTokens, c.StartRate, c.Duration, c.MinTurns, c.MaxTurns, float64(turns)/float64(max(convs, 1)),
		c.UserTokens, c.AnswerTokens, c.ThinkTime)
	return w
}
