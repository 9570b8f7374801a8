package kvevents

import (
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestCheckConfigTokenizer(t *testing.T) {
	for _, c := range []struct {
		tk   *snapshotv1.Tokenizer
		want string // "" = valid
	}{
		{&snapshotv1.Tokenizer{Builtin: TokenizerBytes}, ""},
		{&snapshotv1.Tokenizer{Path: "/etc/infergate/tokenizers/llama3/tokenizer.json"}, ""},
		{&snapshotv1.Tokenizer{Path: "/t.json", ChatTemplate: ChatTemplateLlama3}, ""},
		{nil, "no tokenizer"},
		{&snapshotv1.Tokenizer{Path: "tokenizer.json"}, "absolute path"},
		{&snapshotv1.Tokenizer{Path: "/" + strings.Repeat("a", 4096)}, "absolute path"},
		{&snapshotv1.Tokenizer{Path: "/a\x00b"}, "absolute path"},
		{&snapshotv1.Tokenizer{Path: "/t.json", Builtin: TokenizerBytes}, "not both"},
		{&snapshotv1.Tokenizer{Builtin: "gpt2"}, "want \"bytes\""},
		{&snapshotv1.Tokenizer{Path: "/t.json", ChatTemplate: "chatml"}, "chatTemplate"},
	} {
		err := CheckConfig(&snapshotv1.KVEvents{Tokenizer: c.tk})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.tk, err, c.want)
		}
	}
}
