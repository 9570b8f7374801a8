// Command loadgen runs the routing-quality benchmark (e2e/bench): 8
// simulated replicas behind in-process proxies, every workload with every
// strategy, and writes a Markdown report with an SVG plot.
//
//	go run ./cmd/loadgen -out bench/results          # the full benchmark (make bench-routing)
//	go run ./cmd/loadgen -size smoke -out /tmp/x      # seconds, checks the harness
//	go run ./cmd/loadgen -workloads shared-prefix -strategies round-robin,ours
//	go run ./cmd/loadgen -workloads shared-prefix -strategies ours -dump /tmp/rq  # plus one CSV per cell
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/infergate/infergate/e2e/bench"
	"github.com/infergate/infergate/e2e/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory for report.md and ttft.svg (none: print only)")
	size := fs.String("size", "full", "full or smoke")
	scale := fs.Float64("time-scale", 0.25, "wall seconds per simulated second")
	workloads := fs.String("workloads", "", "comma-separated workload names (default all)")
	strategies := fs.String("strategies", "", "comma-separated strategy names (default all)")
	repeats := fs.Int("repeats", 3, "runs in all of the cells whose verdict is in doubt after the first run (a ratio within a single run's noise of its target); ratios and tables then use medians (-size smoke: 1 unless given)")
	verbose := fs.Bool("v", false, "log proxies and replicas to stderr")
	dump := fs.String("dump", "", "directory for one CSV of per-request results per cell (NN-workload-strategy.csv; none: no dump)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := bench.Options{TimeScale: *scale, ScrapeProxies: []int{1, 4, 16}, Repeats: *repeats,
		Progress: func(s string) { fmt.Fprintln(stdout, s) }}
	switch *size {
	case "full":
		o.Scenarios = bench.Scenarios(bench.Full)
	case "smoke":
		o.Scenarios = bench.Scenarios(bench.Smoke)
		o.ScrapeWindow = 500e6
		// A smoke run checks the harness; its verdicts mean nothing, so
		// repeating the cells in doubt would only cost time.
		if !flagSet(fs, "repeats") {
			o.Repeats = 1
		}
	default:
		return fmt.Errorf("-size %q: want full or smoke", *size)
	}
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if *workloads != "" {
		want := strings.Split(*workloads, ",")
		for _, name := range want {
			if !slices.ContainsFunc(o.Scenarios, func(s bench.Scenario) bool { return s.Workload.Name == name }) {
				return fmt.Errorf("-workloads: no workload %q (have %s)", name, names(o.Scenarios, func(s bench.Scenario) string { return s.Workload.Name }))
			}
		}
		o.Scenarios = slices.DeleteFunc(o.Scenarios, func(s bench.Scenario) bool { return !slices.Contains(want, s.Workload.Name) })
		o.ScrapeProxies = nil
	}
	if *strategies != "" {
		want := strings.Split(*strategies, ",")
		all := bench.Strategies()
		for _, name := range want {
			if !slices.ContainsFunc(all, func(s bench.Strategy) bool { return s.Name == name }) {
				return fmt.Errorf("-strategies: no strategy %q (have %s)", name, names(all, func(s bench.Strategy) string { return s.Name }))
			}
		}
		o.Strategies = slices.DeleteFunc(all, func(s bench.Strategy) bool { return !slices.Contains(want, s.Name) })
	}
	var dumpErr error
	if *dump != "" {
		if err := os.MkdirAll(*dump, 0o755); err != nil {
			return err
		}
		cells := 0
		o.Results = func(c *bench.Cell, w loadgen.Workload, rs []loadgen.Result) {
			cells++
			if err := dumpCell(filepath.Join(*dump, fmt.Sprintf("%02d-%s-%s.csv", cells, c.Workload, fileName(c.Strategy))), w, rs, *scale); err != nil && dumpErr == nil {
				dumpErr = err
			}
		}
	}
	rep, err := bench.Run(ctx, o)
	if err == nil {
		err = dumpErr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for _, l := range rep.Ratios() {
		fmt.Fprintln(stdout, l)
	}
	if *out == "" {
		return nil
	}
	return rep.Write(*out)
}

func dumpCell(path string, w loadgen.Workload, rs []loadgen.Result, scale float64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := loadgen.WriteCSV(f, w, rs, scale); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// flagSet reports whether the command line set the flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// names lists the names of vs for an error message.
func names[T any](vs []T, name func(T) string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = name(v)
	}
	return strings.Join(out, ", ")
}

// fileName turns a strategy name ("ours ×4 proxies") into a file name part.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '+' {
			return r
		}
		return '_'
	}, s)
}
