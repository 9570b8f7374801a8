package loadgen

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
)

// dumpPrefixBytes is how much of a request body keys the CSV's prefix
// column: enough to cover a chat request's head and its prompt's first
// blocks, so requests under one system prompt share a key and unique
// prompts do not.
const dumpPrefixBytes = 512

// WriteCSV writes one row per result of a run of w recorded at timeScale
// (times in simulated seconds), for looking at single requests rather than
// percentiles: which replica served, how much of the prompt was cached, and
// a prefix key grouping requests that share their prompt's head.
func WriteCSV(out io.Writer, w Workload, rs []Result, timeScale float64) error {
	toSim := simSeconds(timeScale)
	sec := func(d time.Duration) string { return strconv.FormatFloat(toSim(d), 'f', 4, 64) }
	cw := csv.NewWriter(out)
	_ = cw.Write([]string{"index", "start_s", "class", "model", "prefix", "status", "ttft_s", "e2e_s",
		"prompt_tokens", "cached_tokens", "output_tokens", "replica", "error"})
	for i := range rs {
		r := &rs[i]
		if r.Index < 0 || r.Index >= len(w.Requests) {
			return fmt.Errorf("result %d: index %d outside the workload's %d requests", i, r.Index, len(w.Requests))
		}
		body := w.Requests[r.Index].Body
		key := xxhash.Sum64(body[:min(len(body), dumpPrefixBytes)])
		_ = cw.Write([]string{strconv.Itoa(r.Index), sec(r.Start), r.Class, r.Model,
			strconv.FormatUint(key, 16), strconv.Itoa(r.Status), sec(r.TTFT), sec(r.E2E),
			strconv.Itoa(r.PromptTokens), strconv.Itoa(r.CachedTokens), strconv.Itoa(r.OutputTokens), r.Replica, r.Err})
	}
	cw.Flush()
	return cw.Error()
}
