// Package k8sbin builds etcd and kube-apiserver from the Go module proxy and
// caches them by version, so tests can run a real API server (via envtest)
// without downloading release tarballs: this machine only reaches the Go
// module proxy.
//
// The binaries land in <cache>/k8s-bin/<kube version>/{etcd,kube-apiserver};
// that directory is what envtest expects in KUBEBUILDER_ASSETS.
package k8sbin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Pinned versions. The kube-apiserver minor matches client-go (v0.36.x) so
// the API surface the control plane is written against is the one it is
// tested against. etcd is the 3.6 line kubernetes 1.36 is validated with.
const (
	DefaultKubeVersion = "1.36.3"
	DefaultEtcdVersion = "3.6.16"
)

// Binary names inside the assets directory (the names envtest looks for).
const (
	EtcdBinary      = "etcd"
	APIServerBinary = "kube-apiserver"
)

// Options selects versions and where to cache. Zero values take defaults.
type Options struct {
	// CacheDir is the root cache directory. Default: $INFERGATE_CACHE, else
	// <repo>/.cache where <repo> holds go.work.
	CacheDir string
	// KubeVersion without the leading "v", e.g. "1.36.3".
	KubeVersion string
	// EtcdVersion without the leading "v", e.g. "3.6.16".
	EtcdVersion string
	// Progress receives human-readable progress lines. Default os.Stderr.
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.KubeVersion == "" {
		o.KubeVersion = DefaultKubeVersion
	}
	if o.EtcdVersion == "" {
		o.EtcdVersion = DefaultEtcdVersion
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	if o.CacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = dir
	}
	return nil
}

// DefaultCacheDir is $INFERGATE_CACHE, or <repo>/.cache (ignored by git).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("INFERGATE_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache"), nil
}

// RepoRoot finds the directory holding go.work, walking up from the working
// directory (tests run in their package directory, commands at the root).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("k8sbin: no go.work above the working directory; set INFERGATE_CACHE")
		}
		dir = parent
	}
}

// Ensure returns the assets directory holding etcd and kube-apiserver,
// building whichever is missing. A cold build takes minutes; a warm call
// only stats two files. Concurrent callers (parallel test binaries) are
// serialised with a file lock so the work is done once.
func Ensure(ctx context.Context, opts Options) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	binDir := filepath.Join(opts.CacheDir, "k8s-bin", opts.KubeVersion)
	if present(binDir) {
		return binDir, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lock(ctx, filepath.Join(opts.CacheDir, "k8s-bin", ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	b := builder{opts: opts, srcRoot: filepath.Join(opts.CacheDir, "k8s-bin", "src")}
	if !exists(filepath.Join(binDir, EtcdBinary)) {
		if err := b.buildEtcd(ctx, filepath.Join(binDir, EtcdBinary)); err != nil {
			return "", err
		}
	}
	if !exists(filepath.Join(binDir, APIServerBinary)) {
		if err := b.buildAPIServer(ctx, filepath.Join(binDir, APIServerBinary)); err != nil {
			return "", err
		}
	}
	return binDir, nil
}

func present(binDir string) bool {
	return exists(filepath.Join(binDir, EtcdBinary)) && exists(filepath.Join(binDir, APIServerBinary))
}

func exists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// lock takes an exclusive flock, polling so ctx cancellation is honoured.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("k8sbin: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type builder struct {
	opts    Options
	srcRoot string
}

func (b builder) progress(format string, args ...any) {
	fmt.Fprintf(b.opts.Progress, "k8sbin: "+format+"\n", args...)
}

// buildEtcd builds etcd's server module (its main package is the etcd binary).
func (b builder) buildEtcd(ctx context.Context, out string) error {
	dir := filepath.Join(b.srcRoot, "etcd-"+b.opts.EtcdVersion)
	gomod := fmt.Sprintf("module infergate.local/k8sbin/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n", b.opts.EtcdVersion)
	if err := writeModule(dir, gomod); err != nil {
		return err
	}
	b.progress("building etcd v%s (first time, ~1 min)…", b.opts.EtcdVersion)
	start := time.Now()
	if err := b.goBuild(ctx, dir, out, "", "go.etcd.io/etcd/server/v3"); err != nil {
		return fmt.Errorf("k8sbin: build etcd: %w", err)
	}
	b.progress("built etcd v%s in %s → %s", b.opts.EtcdVersion, time.Since(start).Round(time.Second), out)
	return nil
}

// buildAPIServer builds k8s.io/kubernetes/cmd/kube-apiserver. kubernetes'
// go.mod requires its staging modules at v0.0.0 and replaces them with
// local paths, which are not in the published module zip; replace
// directives of dependencies are ignored anyway, so the scratch module
// replaces every staging module with its published v0.<minor>.<patch>.
func (b builder) buildAPIServer(ctx context.Context, out string) error {
	kv := "v" + b.opts.KubeVersion
	major, minor, patch, err := splitVersion(b.opts.KubeVersion)
	if err != nil {
		return err
	}
	stagingVersion := fmt.Sprintf("v0.%s.%s", minor, patch)

	dir := filepath.Join(b.srcRoot, "kube-apiserver-"+b.opts.KubeVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b.progress("resolving k8s.io/kubernetes %s…", kv)
	kubeMod, err := b.downloadGoMod(ctx, dir, "k8s.io/kubernetes@"+kv)
	if err != nil {
		return err
	}
	staging, err := stagingModules(kubeMod)
	if err != nil {
		return err
	}
	var gomod strings.Builder
	fmt.Fprintf(&gomod, "module infergate.local/k8sbin/kube-apiserver\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", kv)
	for _, m := range staging {
		fmt.Fprintf(&gomod, "\t%s => %s %s\n", m, m, stagingVersion)
	}
	gomod.WriteString(")\n")
	if err := writeModule(dir, gomod.String()); err != nil {
		return err
	}

	// The same variables hack/lib/version.sh sets, in both packages that
	// report a version (the server's /version reads component-base).
	var ldflags []string
	for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		ldflags = append(ldflags,
			"-X", pkg+".gitVersion="+kv,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
		)
	}
	b.progress("building kube-apiserver %s (first time, ~5 min on 2 cores)…", kv)
	start := time.Now()
	if err := b.goBuild(ctx, dir, out, strings.Join(ldflags, " "), "k8s.io/kubernetes/cmd/kube-apiserver"); err != nil {
		return fmt.Errorf("k8sbin: build kube-apiserver: %w", err)
	}
	b.progress("built kube-apiserver %s in %s → %s", kv, time.Since(start).Round(time.Second), out)
	return nil
}

func splitVersion(v string) (major, minor, patch string, err error) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("k8sbin: kube version %q is not X.Y.Z", v)
	}
	return parts[0], parts[1], parts[2], nil
}

// stagingModules lists the k8s.io modules kubernetes' go.mod replaces with
// ./staging/src paths, minus the samples (not published in lockstep and not
// needed by kube-apiserver).
func stagingModules(gomod []byte) ([]string, error) {
	skip := map[string]bool{"k8s.io/sample-cli-plugin": true, "k8s.io/sample-controller": true}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "replace ")
		f := strings.Fields(line)
		// "k8s.io/api => ./staging/src/k8s.io/api"
		if len(f) != 3 || f[1] != "=>" || !strings.HasPrefix(f[2], "./staging/src/") {
			continue
		}
		if !skip[f[0]] {
			seen[f[0]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(seen) == 0 {
		return nil, errors.New("k8sbin: no staging replace directives found in kubernetes' go.mod")
	}
	mods := make([]string, 0, len(seen))
	for m := range seen {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods, nil
}

// downloadGoMod fetches module@version's go.mod through the module proxy
// and returns its content.
func (b builder) downloadGoMod(ctx context.Context, dir, modVersion string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = dir
	cmd.Env = scratchEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("k8sbin: go mod download %s: %w: %s", modVersion, err, stderr.String())
	}
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("k8sbin: go mod download %s: %w", modVersion, err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("k8sbin: go mod download %s: %s", modVersion, info.Error)
	}
	return os.ReadFile(info.GoMod)
}

// writeModule (re)writes a scratch module's go.mod, dropping a stale go.sum
// only when go.mod changed.
func writeModule(dir, gomod string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "go.mod")
	if old, err := os.ReadFile(path); err == nil && string(old) == gomod {
		return nil
	}
	_ = os.Remove(filepath.Join(dir, "go.sum"))
	return os.WriteFile(path, []byte(gomod), 0o644)
}

// goBuild builds pkg into a temporary name next to out and renames it into
// place, so an interrupted build never looks cached.
func (b builder) goBuild(ctx context.Context, dir, out, ldflags, pkg string) error {
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	defer os.Remove(tmp)
	args := []string{"build", "-trimpath", "-o", tmp}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = scratchEnv()
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, tail(output.String(), 4000))
	}
	return os.Rename(tmp, out)
}

// scratchEnv keeps scratch builds out of the repository's workspace and
// lets them resolve their own go.sum; everything else (GOCACHE, GOPROXY,
// GOMODCACHE) is inherited so the shared caches are reused.
func scratchEnv() []string {
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
