// Command infergatectl inspects a running infergate: what the control plane
// serves each gateway, which proxies are connected and in sync, and what a
// proxy compiled and knows about its endpoints.
//
// Exit codes: 0 success, 1 the request failed (unreachable, not found),
// 2 bad usage, 3 `proxies` found a stale or NACKing proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
	exitStale = 3
)

// usageError marks errors that deserve exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries a specific exit code with its message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{"proxies", "connected proxies and their per-type sync state", runProxies},
		{"snapshot", "the resources the control plane serves one gateway", runSnapshot},
		{"gateways", "gateways the control plane has snapshots for", runGateways},
		{"translate", "offline: YAML in, snapshot + statuses out, no cluster", runTranslate},
		{"proxy", "a proxy's compiled config, live endpoint state, wait queues, KV index, pick explanations and recent decisions (admin port)", runProxy},
		{"kv-events", "KV-event subscriptions per pool: connection, sequence, gaps, resyncs, blocks", runKVEvents},
		{"kv-match", "which model servers hold how many blocks of a prompt (a proxy's KV index)", runKVMatch},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "infergatectl inspects a running infergate.\n\nUsage:\n  infergatectl <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'infergatectl <command> --help' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.run(ctx, args[1:], stdout)
		var ue usageError
		var ee exitError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "infergatectl %s: %v\n", c.name, err)
			return exitUsage
		case errors.As(err, &ee):
			if ee.msg != "" {
				fmt.Fprintf(stderr, "infergatectl %s: %s\n", c.name, ee.msg)
			}
			return ee.code
		default:
			fmt.Fprintf(stderr, "infergatectl %s: %v\n", c.name, err)
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "infergatectl: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// newFlags makes a FlagSet whose parse errors are usage errors and whose
// --help prints the command's flags to stdout.
func newFlags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: infergatectl %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
