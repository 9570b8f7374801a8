package engine

import (
	"sync"
	"time"
)

// Request is one generation (or prefill-only) job. The exported input fields
// are set by the caller before Submit and not touched afterwards; progress is
// read with Progress after a signal on Updates.
type Request struct {
	// Prompt is the rendered prompt text; it is tokenized with CharsPerToken
	// unless Tokens is set.
	Prompt []byte
	// Tokens, when set, are the prompt's token ids from a real tokenizer:
	// they size the prompt, key its blocks and go out in KV events.
	Tokens []uint32
	// MaxTokens is the number of output tokens to generate; 0 means
	// prefill-only (embeddings): the request finishes when its prompt is computed.
	MaxTokens int
	// Adapter is the LoRA adapter name, "" for the base model.
	Adapter string
	// Arrival is the simulated arrival time; Submit stamps it when zero.
	Arrival time.Time

	// Scheduler state, owned by the engine goroutine.
	promptLen   int
	hashes      []uint64
	blocks      []int
	registered  int
	kvTokens    int
	generated   int
	cached      int
	admitted    bool
	firstAt     time.Time
	lastTokenAt time.Time
	queuedFor   time.Duration
	// adapterLoaded and adapterEvicted: how the adapter was found at the
	// first admission (loaded rather than resident; the idle adapter the
	// load swapped out, "" if a slot was free); Stats.LoRA has the totals.
	adapterLoaded  bool
	adapterEvicted string
	finished       bool
	cancelled      bool

	mu     sync.Mutex
	prog   Progress
	notify chan struct{}
}

// Progress is a consistent snapshot of a request's state.
type Progress struct {
	PromptTokens int
	CachedTokens int
	Generated    int
	// QueueTime, TTFT and Finished are in simulated time.
	QueueTime  time.Duration
	FirstToken time.Time
	Finished   time.Time
	Done       bool
	Err        error
}

// NewRequest builds a request; the engine computes tokens and block hashes on Submit.
func NewRequest(prompt []byte, maxTokens int, adapter string) *Request {
	return &Request{Prompt: prompt, MaxTokens: maxTokens, Adapter: adapter, notify: make(chan struct{}, 1)}
}

// Updates is signalled (coalesced) whenever Progress changes.
func (r *Request) Updates() <-chan struct{} { return r.notify }

// Progress returns the latest published state.
func (r *Request) Progress() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prog
}

// total is the number of tokens whose KV the sequence needs: prompt plus the
// tokens generated so far (after preemption they are recomputed like prompt).
func (r *Request) total() int { return r.promptLen + r.generated }

func (r *Request) publish(err error) {
	r.mu.Lock()
	r.prog = r.progress(err)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// progress is the request's state as the scheduler holds it.
func (r *Request) progress(err error) Progress {
	p := Progress{
		PromptTokens: r.promptLen,
		CachedTokens: r.cached,
		Generated:    r.generated,
		QueueTime:    r.queuedFor,
		FirstToken:   r.firstAt,
		Done:         r.finished || err != nil,
		Err:          err,
	}
	if r.finished {
		p.Finished = r.lastTokenAt
	}
	return p
}

// State is the request's state as a Core driven directly (without an
// Engine) left it after its last Step: for callers that step a Core in
// simulated time on their own goroutine and read the requests a step
// touched. Engine users read Progress instead.
func (r *Request) State() Progress { return r.progress(nil) }
