package conformance

import (
	"io"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
)

// A picker that exits because a port was taken is told apart from one
// that listens on its ports and from one that exits for another reason.
func TestPickerPortTaken(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         bool
	}{
		{"taken", `echo 'gRPC server failed to listen - listen tcp :9002: bind: address already in use' >&2; exit 1`, true},
		{"listening", `sleep 30`, false},
		{"other failure", `echo 'no kubeconfig' >&2; exit 1`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := harness.Launch(io.Discard, nil, "/bin/sh", "-c", tc.script)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			if got := pickerPortTaken(p, 2*time.Second); got != tc.want {
				t.Fatalf("pickerPortTaken = %v, want %v", got, tc.want)
			}
		})
	}
}
