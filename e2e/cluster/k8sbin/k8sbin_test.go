package k8sbin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStagingModules(t *testing.T) {
	gomod := `module k8s.io/kubernetes

require (
	k8s.io/api v0.0.0
	k8s.io/utils v0.0.0-20260210185600-b8788abfbbc2
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
	k8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
	example.com/fork => example.com/fork v1.2.3
)

replace k8s.io/kms => ./staging/src/k8s.io/kms
`
	got, err := stagingModules([]byte(gomod))
	if err != nil {
		t.Fatal(err)
	}
	if want := "k8s.io/api,k8s.io/client-go,k8s.io/kms"; strings.Join(got, ",") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if _, err := stagingModules([]byte("module x\n")); err == nil {
		t.Error("expected an error for a go.mod without staging replaces")
	}
}

// TestEnsureWarm: with both binaries present Ensure returns at once and
// builds nothing; a leftover temp file from an interrupted build does not
// count as a binary.
func TestEnsureWarm(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "k8s-bin", "9.9.9")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{EtcdBinary, APIServerBinary + ".tmp-123"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if present(dir) {
		t.Fatal("an interrupted build's temp file was taken as kube-apiserver")
	}
	if err := os.WriteFile(filepath.Join(dir, APIServerBinary), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Ensure(context.Background(), Options{CacheDir: cache, KubeVersion: "9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	if got != dir {
		t.Errorf("Ensure = %s, want %s", got, dir)
	}
}

func TestWriteModuleKeepsSumWhenUnchanged(t *testing.T) {
	dir := t.TempDir()
	if err := writeModule(dir, "module a\n"); err != nil {
		t.Fatal(err)
	}
	sum := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(sum, []byte("sum"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeModule(dir, "module a\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sum); err != nil {
		t.Error("go.sum dropped although go.mod did not change")
	}
	if err := writeModule(dir, "module b\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sum); !os.IsNotExist(err) {
		t.Error("stale go.sum kept after go.mod changed")
	}
}
