package openai_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/infergate/infergate/dataplane/openai"
)

// TestBudget: bodies reserve their buffer's capacity from the global
// budget — a declared length before any byte is read — are refused with
// ErrBudget when it is spent, and give it back on Close or failure.
func TestBudget(t *testing.T) {
	const size = 200 << 10
	payload := strings.Repeat("x", size)
	// Room for two declared bodies, or for one of unknown length while it
	// is copied from its chunks into its own buffer (twice its size).
	budget := openai.NewBudget(450 << 10)

	a, err := openai.ReadBodyWithin(strings.NewReader(payload), size, 1<<20, budget)
	if err != nil {
		t.Fatal(err)
	}
	if u := budget.Used(); u < size || u > size+1 {
		t.Fatalf("a declared %d bytes reserved %d", size, u)
	}
	a2, err := openai.ReadBodyWithin(strings.NewReader(payload), size, 1<<20, budget)
	if err != nil {
		t.Fatalf("a second one fits: %v", err)
	}
	// A third declared body does not fit: refused before reading.
	r := &countingReader{r: strings.NewReader(payload)}
	if _, err := openai.ReadBodyWithin(r, size, 1<<20, budget); !errors.Is(err, openai.ErrBudget) {
		t.Fatalf("over budget: %v", err)
	}
	if r.n != 0 {
		t.Fatalf("read %d bytes of a body refused for its declared length", r.n)
	}
	// Nor does one of unknown length: refused as its buffer grows, and
	// what it had reserved is back.
	before := budget.Used()
	if _, err := openai.ReadBodyWithin(iotest.HalfReader(strings.NewReader(payload)), -1, 1<<20, budget); !errors.Is(err, openai.ErrBudget) {
		t.Fatalf("chunked over budget: %v", err)
	}
	if budget.Used() != before {
		t.Fatalf("a refused body kept %d bytes", budget.Used()-before)
	}
	a.Close()
	a.Close()
	a2.Close()
	if budget.Used() != 0 {
		t.Fatalf("%d bytes reserved after Close", budget.Used())
	}
	b, err := openai.ReadBodyWithin(iotest.HalfReader(strings.NewReader(payload)), -1, 1<<20, budget)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if !bytes.Equal(b.Bytes(), []byte(payload)) {
		t.Fatal("body mangled")
	}
	b.Close()
	if budget.Used() != 0 || budget.Refusals() != 2 || budget.Peak() > budget.Limit() {
		t.Fatalf("used %d refusals %d peak %d", budget.Used(), budget.Refusals(), budget.Peak())
	}
}

// TestTooLargeStopsAtLimit: a body of unknown length never reserves (or
// allocates) more than the per-request limit plus one byte, however long
// it goes on.
func TestTooLargeStopsAtLimit(t *testing.T) {
	const limit = 1 << 20
	budget := openai.NewBudget(0)
	if _, err := openai.ReadBodyWithin(io.LimitReader(zeros{}, 20<<20), -1, limit, budget); !errors.Is(err, openai.ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if p := budget.Peak(); p > limit+1 {
		t.Fatalf("peak reservation %d for a limit of %d", p, limit)
	}
	if budget.Used() != 0 {
		t.Fatalf("%d bytes still reserved", budget.Used())
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
