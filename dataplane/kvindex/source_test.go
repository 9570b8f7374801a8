package kvindex

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/proto/kvevents"
	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

func chatBody(msgs ...string) []byte {
	type m struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var ms []m
	for i, c := range msgs {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		ms = append(ms, m{role, c})
	}
	b, _ := json.Marshal(map[string]any{"model": "m", "messages": ms})
	return b
}

func bytesTokenizer(t testing.TB) *Tokenizer {
	tok, err := NewTokenizer(&snapshotv1.Tokenizer{Builtin: kvevents.TokenizerBytes})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokensRenderChatAsTheServer(t *testing.T) {
	tok := bytesTokenizer(t)
	got, _, err := tok.Tokens(nil, nil, []byte(`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	text := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	if want := kvevents.ByteTokens(nil, []byte(text)); !slices.Equal(got, want) {
		t.Fatalf("chat tokens differ from the template's")
	}
	for body, want := range map[string][]uint32{
		`{"prompt":"abcd"}`:     kvevents.ByteTokens(nil, []byte("abcd")),
		`{"prompt":["abcdef"]}`: kvevents.ByteTokens(nil, []byte("abcdef")),
		`{"prompt":[7,8,9]}`:    {7, 8, 9},
	} {
		if got, _, err := tok.Tokens(nil, nil, []byte(body)); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v", body, got, err)
		}
	}
	for _, bad := range []string{`{}`, `{"prompt":["a","b"]}`, `{"prompt":{}}`, `not json`, `{"messages":[{"role":"user","content":7}]}`} {
		if _, _, err := tok.Tokens(nil, nil, []byte(bad)); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestSourceCachedTokens(t *testing.T) {
	p := newPool("p")
	src := NewSource(p, bytesTokenizer(t))
	body := chatBody(strings.Repeat("shared system prompt ", 40), "question one")
	tokens, _, _ := src.tok.Tokens(nil, nil, body)
	chain := kvevents.AppendBlockKeys(nil, kvevents.RootKey(""), tokens, 16)
	cands := []picker.Candidate{{Endpoint: &endpoints.Endpoint{Address: "a:1"}}, {Endpoint: &endpoints.Endpoint{Address: "b:1"}}, {Endpoint: &endpoints.Endpoint{Address: "c:1"}}}
	out := make([]int, 3)
	req := &picker.Request{Body: body, TargetModel: "m"}
	if src.CachedTokens(req, cands, out) {
		t.Fatal("judged before the index knows any server")
	}
	p.apply(&kvindexv1.PoolBlocks{Pool: "p", Servers: []*kvindexv1.ServerBlocks{
		{Endpoint: "a:1", BlockSize: 16, Replace: true, Added: chain[:10]},
		{Endpoint: "b:1", BlockSize: 16, Replace: true, Added: chain},
	}})
	if !src.CachedTokens(req, cands, out) {
		t.Fatal("not judged")
	}
	if want := []int{160, len(chain) * 16, -1}; !slices.Equal(out, want) {
		t.Fatalf("cached tokens %v, want %v", out, want)
	}
	// An adapter's chain starts from its own root: the base model's
	// blocks do not count for it.
	p.apply(&kvindexv1.PoolBlocks{Pool: "p", Adapters: []string{"m"}, Servers: []*kvindexv1.ServerBlocks{{Endpoint: "c:1", BlockSize: 16, Replace: true}}})
	src.CachedTokens(req, cands, out)
	if !slices.Equal(out, []int{0, 0, 0}) {
		t.Fatalf("adapter request matched base blocks: %v", out)
	}
	if src.CachedTokens(&picker.Request{}, cands, out) {
		t.Fatal("judged a request without a body")
	}
	if m, n, err := src.MatchBody(chatBody("x"), ""); err != nil || n != 1 || len(m) != 3 {
		t.Fatal(m, n, err)
	}
}

// BenchmarkTokenize: the proxy's cost of judging a 220 KB chat prompt
// (JSON decode, template, token ids, block keys) and a 4 KB one, with the
// simulator's byte tokenizer and with a real BPE loaded from a
// tokenizer.json (cl100k's vocabulary, Llama 3's special tokens).
func BenchmarkTokenize(b *testing.B) {
	js, err := cl100k.TokenizerJSON()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		b.Fatal(err)
	}
	bpe, err := NewTokenizer(&snapshotv1.Tokenizer{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	for _, tk := range []struct {
		name string
		tok  *Tokenizer
	}{{"bytes", bytesTokenizer(b)}, {"tokenizer.json", bpe}} {
		for _, size := range []int{4 << 10, 220 << 10} {
			b.Run(fmt.Sprintf("tokenizer=%s/bytes=%d", tk.name, size), func(b *testing.B) {
				var msgs []string
				for n := 0; n < size; n += 2000 {
					msgs = append(msgs, strings.Repeat("lorem ipsum dolor sit amet, \"quoted\" ", 55))
				}
				body := chatBody(msgs...)
				src := NewSource(newPool("p"), tk.tok)
				sc := &scratch{}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, ok := src.keys(sc, body, "m", 16); !ok {
						b.Fatal("no keys")
					}
				}
			})
		}
	}
}
