package k8sbin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Tool is a Go main package built from the module proxy at a pinned
// version, like etcd and kube-apiserver: the Inference Extension's
// endpoint pickers, which the e2e tests and benchmarks run as processes.
type Tool struct {
	// Name is the binary's name.
	Name string
	// Module and Version pin the module the package is in.
	Module, Version string
	// Package is the main package's import path.
	Package string
}

// The Inference Extension's pickers. lwepp is the suite's picker (the
// image its base manifests run; the pinned suite's version); epp is the
// reference picker with its default plugins, the last release whose
// command builds without the experimental CRDs of newer ones.
var (
	LWEPP = Tool{Name: "lwepp", Module: "sigs.k8s.io/gateway-api-inference-extension", Version: "v1.6.0",
		Package: "sigs.k8s.io/gateway-api-inference-extension/cmd/lwepp"}
	EPP = Tool{Name: "epp", Module: "sigs.k8s.io/gateway-api-inference-extension", Version: "v1.5.0",
		Package: "sigs.k8s.io/gateway-api-inference-extension/cmd/epp"}
)

// EnsureTool returns the path of tool's binary, building it on first use
// into <cache>/tools/<name>-<version>/ (without cgo, in a scratch module
// requiring exactly the pinned version; the module proxy refuses version
// listings for some of these modules, so nothing asks for "latest").
func EnsureTool(ctx context.Context, opts Options, tool Tool) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	dir := filepath.Join(opts.CacheDir, "tools", tool.Name+"-"+tool.Version)
	out := filepath.Join(dir, tool.Name)
	if exists(out) {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lock(ctx, filepath.Join(opts.CacheDir, "tools", ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(out) { // built by another process while this one waited
		return out, nil
	}
	b := builder{opts: opts}
	src := filepath.Join(opts.CacheDir, "tools", "src", tool.Name+"-"+tool.Version)
	gomod := fmt.Sprintf("module infergate.local/tools/%s\n\ngo 1.26.0\n\nrequire %s %s\n", tool.Name, tool.Module, tool.Version)
	if err := writeModule(src, gomod); err != nil {
		return "", err
	}
	b.progress("building %s %s from the module proxy (first time, ~1–2 min)…", tool.Name, tool.Version)
	start := time.Now()
	if err := b.goBuild(ctx, src, out, "", tool.Package); err != nil {
		return "", fmt.Errorf("k8sbin: build %s %s: %w", tool.Name, tool.Version, err)
	}
	b.progress("built %s %s in %s → %s", tool.Name, tool.Version, time.Since(start).Round(time.Second), out)
	return out, nil
}
