package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"
)

// decision mirrors one entry of the admin API's /decisions answer (the
// proxy's pipeline.RecentDecision) for the table view.
type decision struct {
	Pool         string           `json:"pool"`
	At           time.Time        `json:"at"`
	RequestID    string           `json:"requestId"`
	Model        string           `json:"model"`
	PromptTokens float64          `json:"promptTokens"`
	OutputTokens float64          `json:"outputTokens"`
	Chosen       string           `json:"chosen"`
	Candidates   []map[string]any `json:"candidates"`
}

// runProxyDecisions lists a proxy's recent pick decisions (GET /decisions):
// one line per pick with the chosen endpoint's cost and the runner-up, or
// with --candidates every candidate's inputs and terms.
func runProxyDecisions(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("proxy decisions", "proxy decisions [--proxy ADDR] [--pool NAMESPACE/NAME] [--limit N] [--candidates] [-o table|json|yaml]", stdout)
	addr := fs.String("proxy", "127.0.0.1:19000", "proxy admin address")
	pool := fs.String("pool", "", "only this pool's decisions (namespace/name)")
	limit := fs.Int("limit", 20, "at most this many decisions, newest first (0: all the proxy keeps, 64 per pool)")
	cands := fs.Bool("candidates", false, "print every candidate's inputs and cost terms under each decision")
	out := fs.String("o", "table", "output: table, json or yaml")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out != "table" && *out != "yaml" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want table, json or yaml", *out)}
	}
	if *limit < 0 {
		return usageError{fmt.Sprintf("--limit %d: want a count ≥ 0", *limit)}
	}
	q := url.Values{}
	if *pool != "" {
		q.Set("pool", *pool)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	path := "decisions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	answer, err := adminCall(ctx, *addr, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if *out != "table" {
		return writeDoc(stdout, answer, *out)
	}
	var ds []decision
	if err := json.Unmarshal(answer, &ds); err != nil {
		return fmt.Errorf("proxy admin answered something else than decisions: %w", err)
	}
	if len(ds) == 0 {
		_, err := fmt.Fprintln(stdout, "no decisions yet (only pools on the cost model explain their picks)")
		return err
	}
	if *cands {
		return printDecisionsLong(stdout, ds, time.Now())
	}
	return printDecisions(stdout, ds, time.Now())
}

// printDecisions prints one line per decision: how long ago, the pool,
// request and model, the request's estimates, the chosen endpoint with its
// cached prefix and cost, and the cheapest other candidate with how much
// dearer it was.
func printDecisions(w io.Writer, ds []decision, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AGE\tPOOL\tREQUEST\tMODEL\tPROMPT\tOUTPUT\tCHOSEN\tCACHED\tCOST\tRUNNER-UP\t+COST")
	for _, d := range ds {
		chosen, next := d.costs()
		cached, cost, nextAddr, delta := "-", "-", "-", "-"
		if chosen != nil {
			cached, cost = numberOf(chosen["cachedTokens"]), numberOf(chosen["cost"])
		}
		if next != nil {
			nextAddr = fmt.Sprint(next["endpoint"])
			if chosen != nil {
				delta = formatNumber(asFloat(next["cost"]) - asFloat(chosen["cost"]))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", age(now, d.At), d.Pool, orDash(d.RequestID), orDash(d.Model),
			formatNumber(d.PromptTokens), formatNumber(d.OutputTokens), orDash(d.Chosen), cached, cost, nextAddr, delta)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "(costs in seconds; CACHED: prompt tokens believed cached on the chosen endpoint; --candidates for every term)")
	return err
}

// printDecisionsLong prints each decision's header line and its candidate
// table.
func printDecisionsLong(w io.Writer, ds []decision, now time.Time) error {
	for i, d := range ds {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s ago  pool %s  request %s  model %s  prompt ~%s tokens  output ~%s tokens  chosen %s\n",
			age(now, d.At), d.Pool, orDash(d.RequestID), orDash(d.Model), formatNumber(d.PromptTokens),
			formatNumber(d.OutputTokens), orDash(d.Chosen))
		if err := candidateTable(w, d.Candidates, d.Chosen, decisionColumns); err != nil {
			return err
		}
	}
	return nil
}

// costs returns the chosen candidate and the cheapest other one (nil when
// there is none).
func (d *decision) costs() (chosen, next map[string]any) {
	for _, c := range d.Candidates {
		switch {
		case c["endpoint"] == d.Chosen:
			chosen = c
		case next == nil || asFloat(c["cost"]) < asFloat(next["cost"]):
			next = c
		}
	}
	return chosen, next
}

func asFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

func numberOf(v any) string {
	if f, ok := v.(float64); ok {
		return formatNumber(f)
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is how long before now t was, to a tenth of a second.
func age(now, t time.Time) string {
	return now.Sub(t).Round(100 * time.Millisecond).String()
}
