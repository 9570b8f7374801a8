package file

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/controlplane/translate"
)

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const routeYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
`

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gatewayYAML)

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan *translate.Inputs, 16)
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, dir, 20*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)), func(in *translate.Inputs) { changes <- in })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})

	next := func(what string) *translate.Inputs {
		t.Helper()
		select {
		case in := <-changes:
			return in
		case <-time.After(5 * time.Second):
			t.Fatalf("no reload after %s", what)
			return nil
		}
	}
	if in := next("start"); len(in.Gateways) != 1 || len(in.HTTPRoutes) != 0 {
		t.Fatalf("initial load: %d gateways, %d routes", len(in.Gateways), len(in.HTTPRoutes))
	}

	// Editing a file reloads it.
	write(t, filepath.Join(dir, "gw.yaml"), gatewayYAML+"---\n"+routeYAML)
	in := next("edit")
	for len(in.HTTPRoutes) == 0 { // a write can surface as two bursts
		in = next("edit")
	}

	// A broken file is logged; the last good inputs stay (no callback).
	write(t, filepath.Join(dir, "broken.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: [\n")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "broken.yaml: document 1") {
		if time.Now().After(deadline) {
			t.Fatalf("broken file not logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case in := <-changes:
		t.Fatalf("onChange called with a broken file present: %d routes", len(in.HTTPRoutes))
	case <-time.After(100 * time.Millisecond):
	}

	// Fixing it reloads again.
	write(t, filepath.Join(dir, "broken.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: fixed}\n")
	in = next("fix")
	for len(in.Services) == 0 {
		in = next("fix")
	}

	// Files in a directory created after the watch started are seen.
	write(t, filepath.Join(dir, "new", "pool.yaml"), poolYAML)
	in = next("new directory")
	for len(in.InferencePools) == 0 {
		in = next("new directory")
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "nope"), 0, slog.New(slog.DiscardHandler), func(*translate.Inputs) {})
	if err == nil {
		t.Fatal("no error for a missing directory")
	}
}

// TestWatchConfigMapSymlinkSwap mimics how the kubelet updates a mounted
// ConfigMap: files are symlinks through "..data", which is atomically
// re-pointed at a new hidden directory.
func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..v1", "config.yaml"), gatewayYAML)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")))

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan *translate.Inputs, 16)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, dir, 20*time.Millisecond, slog.New(slog.DiscardHandler), func(in *translate.Inputs) { changes <- in })
	}()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(routes int) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case in := <-changes:
				if len(in.Gateways) == 1 && len(in.HTTPRoutes) == routes {
					return
				}
			case <-timeout:
				t.Fatalf("no load with %d routes", routes)
			}
		}
	}
	wait(0)
	write(t, filepath.Join(dir, "..v2", "config.yaml"), gatewayYAML+"---\n"+routeYAML)
	must(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	wait(1)
}
