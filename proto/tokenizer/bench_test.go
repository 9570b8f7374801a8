package tokenizer_test

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a box shared with
// other work, wall time per op counts the time the benchmark waited for a
// core, CPU time per op does not (the process is otherwise idle).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports the CPU time per op as well.
func loop(b *testing.B, op func()) {
	start := cpuTime()
	n := 0
	for b.Loop() {
		op()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// prompt220KB is a 220 KB prompt of English-like prose, code and some
// non-Latin text (the long-prompt size).
func prompt220KB() []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	words := strings.Fields(`the of and to in is that for it as was with be by on not he I this are or his from at which
		but have an they you were her she there been one all we their has would when if so no will can more about
		model server request token cache prefix block routing gateway latency throughput replica kubernetes pool`)
	code := "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {\n\tif err := s.check(r); err != nil {\n\t\thttp.Error(w, err.Error(), 400)\n\t\treturn\n\t}\n}\n"
	var b strings.Builder
	for b.Len() < 220<<10 {
		switch rng.IntN(20) {
		case 0:
			b.WriteString(code)
		case 1:
			b.WriteString("数据中心的模型服务器缓存了前缀。 ")
		case 2:
			b.WriteString("\n\n")
		default:
			for range 5 + rng.IntN(15) {
				w := words[rng.IntN(len(words))]
				if rng.IntN(10) == 0 {
					w = strings.ToUpper(w[:1]) + w[1:]
				}
				b.WriteString(w)
				b.WriteByte(' ')
			}
			b.WriteString(". It's 42, isn't it? ")
		}
	}
	return []byte(b.String()[:220<<10])
}

// adversarial220KB is 220 KB of random letters in words of 100 to 3,000
// bytes and runs of "<|": long pieces the vocabulary does not hold whole
// (every merge runs) and many added-token candidates.
func adversarial220KB() []byte {
	rng := rand.New(rand.NewPCG(9, 9))
	var b []byte
	for len(b) < 220<<10 {
		for range 100 + rng.IntN(2900) {
			b = append(b, byte('a'+rng.IntN(26)))
		}
		b = append(b, ' ')
		if rng.IntN(4) == 0 {
			b = append(b, strings.Repeat("<|", 50)...)
		}
	}
	return b[:220<<10]
}

// BenchmarkEncode220KB: the proxy's tokenizer (this package, loaded from
// the cl100k tokenizer.json) against tiktoken-go on the same vocabulary,
// in one invocation.
func BenchmarkEncode220KB(b *testing.B) {
	tok, ref := cl100kPair(b)
	text := prompt220KB()
	b.Run("tokenizer.json", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		var ids []uint32
		loop(b, func() { ids = tok.Encode(ids[:0], text, false) })
		b.ReportMetric(float64(len(ids)), "tokens")
	})
	adv := adversarial220KB()
	b.Run("tokenizer.json/adversarial", func(b *testing.B) {
		b.SetBytes(int64(len(adv)))
		var ids []uint32
		loop(b, func() { ids = tok.Encode(ids[:0], adv, false) })
		b.ReportMetric(float64(len(ids)), "tokens")
	})
	b.Run("tiktoken-go", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		var ids []uint32
		loop(b, func() { ids = ref.Encode(ids[:0], text, false) })
		b.ReportMetric(float64(len(ids)), "tokens")
	})
}
