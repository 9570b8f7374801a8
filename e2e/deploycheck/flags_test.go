package deploycheck_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkFlagsAccepted runs the control-plane binary with the arguments the
// chart renders (plus a kubeconfig that does not exist): it must get past
// flag parsing and fail only on the missing cluster. A chart passing a flag
// the binary does not know would crash-loop on install.
func checkFlagsAccepted(t *testing.T, values string, args []string) {
	t.Helper()
	bin := controlPlaneBinary(t)
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	out, err := exec.Command(bin, append(args, "--kubeconfig", missing)...).CombinedOutput()
	if err == nil {
		t.Fatalf("%s values: control plane started without a cluster:\n%s", values, out)
	}
	if strings.Contains(string(out), "flag provided but not defined") || strings.Contains(string(out), "invalid value") {
		t.Fatalf("%s values: the chart passes arguments the control plane rejects:\n%s", values, out)
	}
	if !strings.Contains(string(out), "no-kubeconfig") {
		t.Fatalf("%s values: want a failure about the missing kubeconfig, got:\n%s", values, out)
	}
}

// controlPlaneBinary is bin/controlplane from $INFERGATE_BIN (make test-e2e
// builds it), else a fresh build.
func controlPlaneBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("INFERGATE_BIN"); dir != "" {
		return filepath.Join(dir, "controlplane")
	}
	out := filepath.Join(t.TempDir(), "controlplane")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/controlplane")
	cmd.Dir = filepath.Join("..", "..", "controlplane")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build controlplane: %v\n%s", err, b)
	}
	return out
}
