package endpoints

import (
	"bytes"
	"slices"
)

// keepFamilies appends to out the lines of the text exposition body that
// belong to one of fams — their samples and their # TYPE / # HELP lines —
// and drops the rest. A model server's exposition is mostly histograms
// the picker never reads (vLLM's latency families make up over 90 % of
// it); expfmt's parser builds every sample of every family, so parsing
// only the wanted lines cuts a scrape's CPU cost by an order of magnitude
// (BenchmarkParseEngine), which with a scrape every 50 ms per endpoint is
// the proxy's largest fixed cost. A malformed line of a family the proxy
// does not read no longer fails the scrape; every line it does read is
// still parsed, and checked, in full.
func keepFamilies(body []byte, fams []string, out []byte) []byte {
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i+1], body[i+1:]
		} else {
			line, body = body, nil
		}
		if wanted(line, fams) {
			out = append(out, line...)
		}
	}
	if n := len(out); n > 0 && out[n-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}

// wanted reports whether line belongs to one of fams. Lines the filter
// cannot attribute cheaply (a quoted UTF-8 name, "{...}") are kept for the
// parser to judge.
func wanted(line []byte, fams []string) bool {
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 {
		return false
	}
	switch line[0] {
	case '{':
		return true
	case '#':
		// "# TYPE name ..." and "# HELP name ..."; other comments go.
		rest := bytes.TrimLeft(line[1:], " \t")
		kw, rest, ok := bytes.Cut(rest, []byte(" "))
		if !ok || (string(kw) != "TYPE" && string(kw) != "HELP") {
			return false
		}
		line = bytes.TrimLeft(rest, " \t")
	}
	end := bytes.IndexAny(line, "{ \t\r\n")
	if end < 0 {
		end = len(line)
	}
	name := line[:end]
	return slices.ContainsFunc(fams, func(f string) bool { return string(name) == f })
}
