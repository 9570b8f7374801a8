package kvindex

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/infergate/infergate/dataplane/picker"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	kvindexv1 "github.com/infergate/infergate/proto/kvindex/v1"
	"github.com/infergate/infergate/proto/pickerprofile"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

type onePool struct {
	profile *snapshotv1.PickerProfile
	sched   *picker.Scheduler
}

func (o onePool) Each(fn func(string, *snapshotv1.PickerProfile, *picker.Scheduler)) {
	fn("p", o.profile, o.sched)
}

// A tokenizer.json that does not parse leaves the pool on approximate
// matching with a log line, a metric and the admin state saying why; the
// file fixed, the pool matches precisely.
func TestTokenizerFileThatDoesNotParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(`{"model": {"type": "Unigram"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sched, err := picker.FromProfile(pickerprofile.Default())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	profile := &snapshotv1.PickerProfile{KvEvents: &snapshotv1.KVEvents{Tokenizer: &snapshotv1.Tokenizer{Path: path}}}
	c := New(Config{Pools: onePool{profile, sched}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c.Apply(&kvindexv1.IndexUpdate{Pools: []*kvindexv1.PoolBlocks{{Pool: "p", Servers: []*kvindexv1.ServerBlocks{{Endpoint: "a:1", BlockSize: 16, Replace: true}}}}}, true)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collector())
	for range 3 {
		c.attach()
	}
	st := c.State().Pools["p"]
	if st.Attached || !strings.Contains(st.TokenizerError, "only byte-level BPE") {
		t.Fatalf("state %+v: want not attached, with the tokenizer's error", st)
	}
	if n := strings.Count(logs.String(), "does not load"); n != 1 {
		t.Errorf("logged %d times, want once per file revision:\n%s", n, logs.String())
	}
	if got := c.tokenizerFailures.Load(); got != 1 {
		t.Errorf("load failures %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "infergate_proxy_kv_tokenizer_unusable"); err != nil || n != 1 {
		t.Errorf("unusable series %d %v", n, err)
	}
	// The problem the proxy reports for the pool's status.
	if ps := c.Problems(); len(ps) != 1 || ps[0].GetPool() != "p" || ps[0].GetReason() != fleetv1.ReasonTokenizerUnusable ||
		!strings.Contains(ps[0].GetMessage(), path) || !strings.Contains(ps[0].GetMessage(), "only byte-level BPE") ||
		!strings.HasSuffix(ps[0].GetMessage(), "prefix matching stays approximate") {
		t.Errorf("problems %v", ps)
	}

	js, err := cl100k.TokenizerJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	c.attach()
	st = c.State().Pools["p"]
	if !st.Attached || st.TokenizerError != "" {
		t.Fatalf("state %+v after the fix: want attached", st)
	}
	if ps := c.Problems(); len(ps) != 0 {
		t.Errorf("problems %v after the fix", ps)
	}
	// Chat prompts are tokenized with the file's vocabulary: Llama 3's
	// <|begin_of_text|> and header tokens, cl100k's ids for the text.
	tokens, _, err := c.attached["p"].source.tok.Tokens(nil, nil, chatBody("hello world"))
	if err != nil || len(tokens) < 6 || tokens[0] != 128000 || tokens[1] != 128006 {
		t.Fatalf("tokens %v %v", tokens, err)
	}
	if got, _, _ := c.attached["p"].source.tok.Tokens(nil, nil, []byte(`{"prompt":"hello world"}`)); len(got) != 3 || got[0] != 128000 || got[1] != 15339 || got[2] != 1917 {
		t.Fatalf("completion tokens %v: want BOS, hello, world", got)
	}
}
