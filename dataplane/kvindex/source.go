package kvindex

import (
	"sync"
	"sync/atomic"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/proto/kvevents"
)

// MaxPromptTokens bounds the tokens of a prompt matched against the index
// (512k): a longer prompt's tail is not matched.
const MaxPromptTokens = 1 << 19

// Source is a pool's picker.PrefixSource: the prompt's block chain
// matched against the servers' blocks.
type Source struct {
	pool *Pool
	tok  *Tokenizer
	bufs sync.Pool
	// matched counts requests judged, unjudged those not (no body, no
	// prompt the tokenizer reads, no server known yet).
	matched, unjudged atomic.Int64
}

type scratch struct {
	tokens []uint32
	text   []byte
	keys   []uint64
}

// NewSource matches pool's requests, tokenized by tok.
func NewSource(pool *Pool, tok *Tokenizer) *Source {
	return &Source{pool: pool, tok: tok, bufs: sync.Pool{New: func() any { return &scratch{} }}}
}

var _ picker.PrefixSource = (*Source)(nil)

// CachedTokens implements picker.PrefixSource.
func (s *Source) CachedTokens(req *picker.Request, cands []picker.Candidate, out []int) bool {
	bs := s.pool.BlockSize()
	if req.Body == nil || bs == 0 {
		s.unjudged.Add(1)
		return false
	}
	sc := s.bufs.Get().(*scratch)
	defer s.bufs.Put(sc)
	n, ok := s.keys(sc, req.Body, req.TargetModel, bs)
	if !ok {
		s.unjudged.Add(1)
		return false
	}
	s.pool.Match(sc.keys[:n], func(i int) string { return cands[i].Endpoint.Address }, out)
	for i, b := range out {
		if b > 0 {
			out[i] = b * bs
		}
	}
	s.matched.Add(1)
	return true
}

// keys computes body's block chain into sc.keys.
func (s *Source) keys(sc *scratch, body []byte, model string, bs int) (int, bool) {
	var err error
	sc.tokens, sc.text, err = s.tok.Tokens(sc.tokens[:0], sc.text, body)
	if err != nil {
		return 0, false
	}
	root := kvevents.RootKey("")
	if model != "" && s.pool.IsAdapter(model) {
		root = kvevents.RootKey(model)
	}
	sc.keys = kvevents.AppendBlockKeys(sc.keys[:0], root, sc.tokens[:min(len(sc.tokens), MaxPromptTokens)], bs)
	return len(sc.keys), true
}

// MatchBody reports, for the admin API, how many blocks of body's prompt
// each indexed server holds (by endpoint), and the prompt's full blocks.
func (s *Source) MatchBody(body []byte, model string) (map[string]int, int, error) {
	bs := s.pool.BlockSize()
	sc := &scratch{}
	var err error
	if sc.tokens, sc.text, err = s.tok.Tokens(nil, nil, body); err != nil {
		return nil, 0, err
	}
	if bs == 0 {
		return map[string]int{}, 0, nil
	}
	n, _ := s.keys(sc, body, model, bs)
	servers := s.pool.Servers()
	out := make([]int, len(servers))
	s.pool.Match(sc.keys[:n], func(i int) string { return servers[i].Endpoint }, out)
	m := make(map[string]int, len(servers))
	for i, sv := range servers {
		m[sv.Endpoint] = out[i]
	}
	return m, n, nil
}
