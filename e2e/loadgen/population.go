package loadgen

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// PopulationConfig shapes a workload of many long shared prefixes (system
// prompts, documents) of unequal popularity: every request is a unique
// question under one prefix drawn from a Zipf law.
type PopulationConfig struct {
	// Name of the workload and a sentence on what it stresses, for the
	// report.
	Name, Purpose string
	Prefixes      int
	// ZipfS skews popularity: prefix k is asked with probability ∝
	// 1/(k+1)^ZipfS (0: uniform).
	ZipfS          float64
	PrefixTokens   Range
	QuestionTokens Range
	OutputTokens   Range
	Arrivals       Arrivals
	Duration       time.Duration
	Seed           uint64
}

// Population generates the workload PopulationConfig describes.
func Population(model string, c PopulationConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 6))
	prefixes := make([]string, c.Prefixes)
	total := 0
	for i := range prefixes {
		n := c.PrefixTokens.draw(rng)
		total += n
		prefixes[i] = fmt.Sprintf("You are assistant %d. ", i) + text(rng, n*4)
	}
	z := newZipf(c.Prefixes, c.ZipfS)
	w := Workload{Name: c.Name, Duration: c.Duration}
	for i, at := range c.Arrivals.times(rng, c.Duration) {
		out := c.OutputTokens.draw(rng)
		q := fmt.Sprintf("request %d asks: ", i) + text(rng, c.QuestionTokens.draw(rng)*4)
		w.Requests = append(w.Requests, Request{At: at, Model: model, MaxTokens: out,
			Body: chatBody(model, prefixes[z.draw(rng)], q, out)})
	}
	skew := "uniform popularity"
	if c.ZipfS > 0 {
		skew = fmt.Sprintf("Zipf popularity (s = %.2g: the most popular prefix gets %.0f %% of requests, the top 4 %.0f %%)",
			c.ZipfS, 100*z.share(0), 100*z.cdf[min(3, len(z.cdf)-1)])
	}
	w.Description = fmt.Sprintf("%s: %d prefixes of %s tokens (%d k tokens in all), %s; %s-token questions, %s-token answers; %s over %s",
		c.Purpose, c.Prefixes, c.PrefixTokens, total/1000, skew, c.QuestionTokens, c.OutputTokens, c.Arrivals, c.Duration)
	return w
}

// LongShortConfig shapes a mix of long-context requests (questions about
// a few long shared documents) and short unique chat requests.
type LongShortConfig struct {
	Documents      int
	DocumentTokens Range
	// LongShare is the fraction of requests that are long.
	LongShare                     float64
	QuestionTokens, ShortTokens   Range
	LongOutputTokens, ShortOutput Range
	Arrivals                      Arrivals
	Duration                      time.Duration
	Seed                          uint64
}

// LongShort generates the long/short mix: a long request puts one of the
// documents (uniformly drawn) before its question, a short one is a
// unique prompt.
func LongShort(model string, c LongShortConfig) Workload {
	rng := rand.New(rand.NewPCG(c.Seed, 7))
	docs := make([]string, c.Documents)
	for i := range docs {
		docs[i] = fmt.Sprintf("Document %d. ", i) + text(rng, c.DocumentTokens.draw(rng)*4)
	}
	w := Workload{Name: "long-short", Duration: c.Duration, Description: fmt.Sprintf(
		"%.0f %% long requests (one of %d documents of %s tokens + a %s-token question, %s-token answers) among short unique prompts (%s tokens, %s-token answers); %s over %s",
		100*c.LongShare, c.Documents, c.DocumentTokens, c.QuestionTokens, c.LongOutputTokens, c.ShortTokens, c.ShortOutput, c.Arrivals, c.Duration)}
	for i, at := range c.Arrivals.times(rng, c.Duration) {
		var body []byte
		var out int
		if rng.Float64() < c.LongShare {
			out = c.LongOutputTokens.draw(rng)
			q := fmt.Sprintf("request %d asks: ", i) + text(rng, c.QuestionTokens.draw(rng)*4)
			body = chatBody(model, docs[rng.IntN(len(docs))], q, out)
		} else {
			out = c.ShortOutput.draw(rng)
			body = chatBody(model, "", fmt.Sprintf("request %d: ", i)+text(rng, c.ShortTokens.draw(rng)*4), out)
		}
		w.Requests = append(w.Requests, Request{At: at, Model: model, MaxTokens: out, Body: body})
	}
	return w
}
