package loadgen_test

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

func TestWriteCSV(t *testing.T) {
	w := loadgen.SharedPrefix("m", loadgen.SharedPrefixConfig{Groups: 2, UsersPerGroup: 2, SystemTokens: 200,
		QuestionTokens: 10, OutputTokens: 5, StartRate: 20, EndRate: 20, Duration: 2 * time.Second, Seed: 3})
	if len(w.Requests) < 4 {
		t.Fatalf("only %d requests", len(w.Requests))
	}
	rs := make([]loadgen.Result, len(w.Requests))
	for i := range rs {
		rs[i] = loadgen.Result{Index: i, Status: 200, Start: time.Duration(i) * time.Second / 4,
			TTFT: time.Second / 2, E2E: time.Second, PromptTokens: 215, CachedTokens: 192, OutputTokens: 5, Replica: "r1"}
	}
	var b strings.Builder
	if err := loadgen.WriteCSV(&b, w, rs, 0.25); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(rs)+1 || rows[0][4] != "prefix" {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	// Times are simulated: 0.5 s wall at scale 0.25 is 2 s.
	if rows[1][6] != "2.0000" || rows[2][1] != "1.0000" || rows[1][11] != "r1" {
		t.Fatalf("row 1 %v, row 2 %v", rows[1], rows[2])
	}
	// Two system prompts: requests share a prefix key exactly when they
	// share a system prompt.
	keys := map[string]bool{}
	for _, r := range rows[1:] {
		keys[r[4]] = true
	}
	if len(keys) != 2 {
		t.Fatalf("%d prefix keys for 2 groups", len(keys))
	}
	rs[0].Index = len(w.Requests)
	if err := loadgen.WriteCSV(&b, w, rs, 1); err == nil {
		t.Fatal("a result outside the workload was written")
	}
}
