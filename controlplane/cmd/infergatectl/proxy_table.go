package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// column is a candidate table column: the flattened JSON key it shows and
// its header.
type column struct{ key, header string }

// costColumns are the cost model's terms (picker.Terms) in the order they
// add up: the tokens believed cached, then seconds of queueing, prefill,
// decode, harm to others, LoRA loading, displacing a planned home, and the
// total the pick minimised. Home, LoRA and Displace are absent (omitted
// from the JSON) unless some candidate has one.
func costColumns(prefix string) []column {
	cols := []column{{"cachedTokens", "CACHED"}, {"home", "HOME"}, {"wait", "WAIT"}, {"prefill", "PREFILL"},
		{"decode", "DECODE"}, {"harm", "HARM"}, {"lora", "LORA"}, {"displace", "DISPLACE"}, {"cost", "COST"}}
	for i := range cols {
		cols[i].key = prefix + cols[i].key
	}
	return cols
}

// explainColumns are an explanation's candidate columns: what the proxy
// sees of the endpoint, then the cost terms. The terms' own inputs
// (terms.waiting etc.: the scraped numbers plus the unseen sends) are in
// -o json only.
var explainColumns = append([]column{{"address", "ADDRESS"}, {"pod", "POD"}, {"fresh", "FRESH"}, {"waiting", "WAITING"},
	{"running", "RUNNING"}, {"kvCache", "KVCACHE"}, {"unseen", "UNSEEN"}, {"metricsAgeMs", "AGE(MS)"},
	{"inFlight", "INFLIGHT"}, {"ejected", "EJECTED"}}, costColumns("terms.")...)

// decisionColumns are a recorded decision's candidate columns: the cost
// model's inputs (waiting and running include the sends since the
// scrape) and terms.
var decisionColumns = append([]column{{"endpoint", "ENDPOINT"}, {"fresh", "FRESH"}, {"waiting", "WAITING"},
	{"running", "RUNNING"}, {"kvUsage", "KVUSAGE"}}, costColumns("")...)

// ignoredKeys are reported keys a table leaves to -o json (the terms'
// inputs, shown unprefixed by explain's own columns).
var ignoredKeys = map[string]bool{"terms.waiting": true, "terms.running": true, "terms.kvUsage": true, "terms.fresh": true}

// candidateTable prints candidates one per row, the chosen one (matched
// on the first column) marked with *: the known columns some candidate
// has, then any other key the proxy reports in name order (nested objects
// flattened as parent.child), so a newer proxy's fields still show.
func candidateTable(w io.Writer, cands []map[string]any, chosen string, known []column) error {
	rows := make([]map[string]string, len(cands))
	present := map[string]bool{}
	for i, c := range cands {
		rows[i] = map[string]string{}
		flatten("", c, rows[i])
		for k := range rows[i] {
			present[k] = true
		}
	}
	var cols []column
	for _, c := range known {
		if present[c.key] {
			cols = append(cols, c)
		}
		delete(present, c.key)
	}
	var rest []string
	for k := range present {
		if !ignoredKeys[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		cols = append(cols, column{k, strings.ToUpper(k)})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	fmt.Fprintln(tw, " \t"+strings.Join(headers, "\t"))
	for _, r := range rows {
		mark := " "
		if chosen != "" && len(cols) > 0 && r[cols[0].key] == chosen {
			mark = "*"
		}
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r[c.key]
			if vals[i] == "" {
				vals[i] = "-"
			}
		}
		fmt.Fprintln(tw, mark+"\t"+strings.Join(vals, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if slices.ContainsFunc(cols, func(c column) bool { return c.header == "COST" }) {
		_, err := fmt.Fprintln(w, "(cost terms in seconds; CACHED: prompt tokens believed cached there; * chosen)")
		return err
	}
	return nil
}

// flatten writes v's leaves into out keyed by their dotted path: numbers
// with at most three decimals, nulls left out.
func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if prefix != "" {
				k = prefix + "." + k
			}
			flatten(k, e, out)
		}
	case float64:
		out[prefix] = formatNumber(x)
	case nil:
	default:
		out[prefix] = fmt.Sprint(x)
	}
}

func formatNumber(x float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", x), "0"), ".")
}
