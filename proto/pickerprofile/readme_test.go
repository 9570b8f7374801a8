package pickerprofile

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's profile reference")

const (
	readmePath  = "../../README.md"
	readmeBegin = "<!-- pickerprofile:begin (generated from proto/pickerprofile by its TestREADMEReference -update) -->\n"
	readmeEnd   = "<!-- pickerprofile:end -->"
)

// reference renders the plugins table as Markdown.
func reference() string {
	var b strings.Builder
	b.WriteString("| plugin | default weight | what it does | parameter | values | default | meaning |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, pl := range plugins {
		w := "—"
		if pl.DefaultWeight > 0 {
			w = fmtNum(pl.DefaultWeight)
		}
		if len(pl.Params) == 0 {
			fmt.Fprintf(&b, "| `%s` | %s | %s | | | | |\n", pl.Name, w, pl.Doc)
			continue
		}
		for i, d := range pl.Params {
			name, wt, doc := "", "", ""
			if i == 0 {
				name, wt, doc = "`"+pl.Name+"`", w, pl.Doc
			}
			fmt.Fprintf(&b, "| %s | %s | %s | `%s` | %s, %s–%s | %s | %s |\n", name, wt, doc, d.Name, d.Kind,
				fmtNum(d.Min), fmtNum(d.Max), fmtNum(d.Default), d.Doc)
		}
	}
	return b.String()
}

// TestREADMEReference: the README's profile reference is the table's.
func TestREADMEReference(t *testing.T) {
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i, j := strings.Index(s, readmeBegin), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the pickerprofile markers", readmePath)
	}
	want := s[:i+len(readmeBegin)] + reference() + s[j:]
	if want == s {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the README's profile reference differs from the plugins table: run go test ./pickerprofile -run TestREADMEReference -update")
}
