// Package scenarios holds end-to-end tests that run the real binaries —
// control plane, proxy, simulated model servers — and talk to them the way
// users do (the OpenAI Go SDK, YAML edits, kill -9).
package scenarios

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/infergate/infergate/e2e/harness"
)

// bins is set once by TestMain before any test runs and only read after.
var bins harness.Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("scenarios: skipped in -short mode (they start real processes)")
		os.Exit(0)
	}
	b, cleanup, err := harness.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
	bins = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}
