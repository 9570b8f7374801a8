package deploycheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/infergate/infergate/e2e/cluster"
)

// HelmVersion is the helm the chart is checked with, built from the Go
// module proxy (no other download source is needed).
const HelmVersion = "v3.22.0"

// CacheDir is where version-keyed tool builds live: $INFERGATE_CACHE, else
// ~/.cache/infergate (outside the clone, so a fresh checkout reuses them).
func CacheDir() (string, error) {
	if d := os.Getenv("INFERGATE_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "infergate"), nil
}

// Helm returns the path of the pinned helm binary, building it with
// `go install` into <cache>/helm/<version> on first use (minutes, cold).
func Helm(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "helm", HelmVersion)
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Install into a temp dir and rename, so an interrupted build never
	// leaves a half-written binary at the cached path.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", "helm.sh/helm/v3/cmd/helm@"+HelmVersion)
	cmd.Dir = os.TempDir() // outside the workspace: helm's deps must not touch our go.mod
	cmd.Env = append(cluster.EnvWithout(os.Environ(), "GOWORK", "GOFLAGS", "GOBIN"), "GOWORK=off", "GOBIN="+tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("deploycheck: go install helm %s: %w\n%s", HelmVersion, err, out.String())
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, serr := os.Stat(bin); serr != nil { // lost a race with another build: fine
			return "", err
		}
	}
	return bin, nil
}

// RunHelm runs helm with args and returns its stdout. Helm's own caches and
// config go under a temp dir so nothing is written to $HOME.
func RunHelm(ctx context.Context, helm, home string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(cluster.EnvWithout(os.Environ(), "KUBECONFIG"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}
