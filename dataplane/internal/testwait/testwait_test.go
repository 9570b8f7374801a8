package testwait_test

import (
	"testing"

	"github.com/infergate/infergate/dataplane/internal/testwait"
)

func TestUntil(t *testing.T) {
	calls := 0
	testwait.Until(t, "the fifth call", func() bool { calls++; return calls == 5 })
	if calls != 5 {
		t.Errorf("cond called %d times, want 5 (until it held)", calls)
	}
}
