// Package testwait lets a test wait for a condition that another goroutine
// or process brings about with nothing to block on (a connection closed, a
// queue filled, an endpoint scraped).
package testwait

import (
	"testing"
	"time"
)

// timeout is how long Until waits before failing the test.
const timeout = 5 * time.Second

// Until returns once cond holds and fails t when it does not within 5 s;
// what names the condition in the failure. It polls after 1 ms, then ever
// less often up to every 5 ms: most conditions hold almost at once, and
// some are costly to check (an HTTP request, a dial).
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 5*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, timeout)
		}
		time.Sleep(pause)
	}
}
