package kvevents

import (
	"errors"
	"fmt"
	"strings"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Tokenizers a pool's KVEvents may name as builtin.
const (
	// TokenizerBytes is modelsim's default tokenizer (ByteTokens).
	TokenizerBytes = "bytes"
)

// Chat templates a proxy renders messages with before tokenizing.
const (
	// ChatTemplateLlama3 renders messages as Llama 3's template does
	// (<|begin_of_text|>, a header per message, <|eot_id|>, then the
	// assistant header), as modelsim and Llama 3 models do.
	ChatTemplateLlama3 = "llama3"
)

// CheckConfig validates a pool's KVEvents the way both planes read it: the
// control plane reports a problem on the pool (which then keeps
// approximate prefix matching), a proxy never sees one it would reject.
func CheckConfig(kv *snapshotv1.KVEvents) error {
	if kv == nil {
		return nil
	}
	if kv.GetPort() > 65535 || kv.GetReplayPort() > 65535 {
		return fmt.Errorf("kvEvents: ports must be at most 65535, got %d and %d", kv.GetPort(), kv.GetReplayPort())
	}
	if len(kv.GetTopic()) > 256 {
		return errors.New("kvEvents: topic longer than 256 bytes")
	}
	tk := kv.GetTokenizer()
	switch {
	case tk.GetBuiltin() == "" && tk.GetPath() == "":
		return errors.New("kvEvents: no tokenizer: precise prefix matching needs the prompts' token ids (tokenizer.builtin or tokenizer.path)")
	case tk.GetBuiltin() != "" && tk.GetPath() != "":
		return errors.New("kvEvents: tokenizer: set builtin or path, not both")
	case tk.GetBuiltin() != "" && tk.GetBuiltin() != TokenizerBytes:
		return fmt.Errorf("kvEvents: tokenizer.builtin %q: want %q", tk.GetBuiltin(), TokenizerBytes)
	case tk.GetPath() != "":
		// The file is on the proxies' file system: each proxy loads it and
		// keeps approximate matching when it does not parse.
		if p := tk.GetPath(); !strings.HasPrefix(p, "/") || len(p) > 4096 || strings.ContainsRune(p, 0) {
			return fmt.Errorf("kvEvents: tokenizer.path %q: want an absolute path to a Hugging Face tokenizer.json (at most 4096 bytes)", p)
		}
	}
	switch tk.GetChatTemplate() {
	case "", ChatTemplateLlama3:
	default:
		return fmt.Errorf("kvEvents: tokenizer.chatTemplate %q: want %q", tk.GetChatTemplate(), ChatTemplateLlama3)
	}
	return nil
}
