// Package harness starts the project's real binaries for end-to-end tests:
// built once per test binary, logs prefixed into the test log, stopped and
// cleaned up with the test.
package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/proto/freeport"
)

// Binaries locates (or builds) bin/controlplane, bin/proxy and bin/modelsim.
type Binaries struct {
	Dir string
}

// Build returns the directory holding the binaries: $INFERGATE_BIN when set
// (`make test-e2e` builds them first), otherwise a `go build` into a fresh
// temporary directory so `go test` works on its own. Call it once from
// TestMain; cleanup removes what it built.
func Build() (b Binaries, cleanup func(), err error) {
	if dir := os.Getenv("INFERGATE_BIN"); dir != "" {
		for _, name := range []string{"controlplane", "proxy", "modelsim", "infergatectl"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				return Binaries{}, nil, fmt.Errorf("INFERGATE_BIN=%s: %v (run `make build`)", dir, err)
			}
		}
		return Binaries{Dir: dir}, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "infergate-e2e-bin-")
	if err != nil {
		return Binaries{}, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	root := repoRoot()
	for _, c := range []struct{ mod, pkg, out string }{
		{"controlplane", "./cmd/controlplane", "controlplane"},
		{"controlplane", "./cmd/infergatectl", "infergatectl"},
		{"dataplane", "./cmd/proxy", "proxy"},
		{"e2e", "./cmd/modelsim", "modelsim"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c.out), c.pkg)
		cmd.Dir = filepath.Join(root, c.mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			cleanup()
			return Binaries{}, nil, fmt.Errorf("go build %s: %v\n%s", c.pkg, err, out)
		}
	}
	return Binaries{Dir: dir}, cleanup, nil
}

// Path is the full path of one binary.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Process is a running binary whose output goes to the test log.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu   sync.Mutex
	logs strings.Builder
}

// Start runs a binary until the test ends (or Stop/Kill). Its stdout and
// stderr are logged line by line with the process name as prefix.
func Start(t testing.TB, name, path string, args ...string) *Process {
	t.Helper()
	pr, pw := io.Pipe()
	p, err := launch(pw, nil, false, path, args...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.Name = name
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			t.Logf("[%s] %s", name, line)
		}
	}()
	go func() {
		<-p.done
		pw.Close()
	}()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

// Launch runs a binary in its own process group with the test's
// environment plus env, its stdout and stderr going to out. The caller
// stops it (Stop, Kill); Logs holds the first 64 KiB it printed (how it
// started, or why it could not).
func Launch(out io.Writer, env []string, path string, args ...string) (*Process, error) {
	return launch(out, env, true, path, args...)
}

// launchLogs is how much of a Launched process's output Logs keeps.
const launchLogs = 64 << 10

// launch is Launch; keep says whether Logs keeps the output's start
// (Start keeps every line itself).
func launch(out io.Writer, env []string, keep bool, path string, args ...string) (*Process, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Process{Name: filepath.Base(path), cmd: cmd, done: make(chan struct{})}
	if keep {
		out = io.MultiWriter(out, logHead{p})
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		// Wait returns once the output has all been copied to out.
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// logHead writes the first launchLogs bytes of a process's output into
// its Logs.
type logHead struct{ p *Process }

func (h logHead) Write(b []byte) (int, error) {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	if left := launchLogs - h.p.logs.Len(); left > 0 {
		h.p.logs.Write(b[:min(len(b), left)])
	}
	return len(b), nil
}

// Logs returns everything the process printed so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// PeakRSS is the process's peak resident set size in bytes (VmHWM, Linux).
func (p *Process) PeakRSS() (int64, error) {
	return procStatusBytes(p.Pid(), "VmHWM:")
}

// RSS is the process's resident set size now in bytes (VmRSS, Linux).
func (p *Process) RSS() (int64, error) {
	return procStatusBytes(p.Pid(), "VmRSS:")
}

// procStatusBytes reads a "<field> <n> kB" line of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s %q: %v", pid, field, rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// Signal sends sig to the process (not its group) without waiting.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to grace before SIGKILL.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill ends the process (and its process group) at once, like a crash.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Wait blocks until the process ends and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// FreePort returns a TCP port that is free on host at the time of the call
// (see package freeport for why not port 0).
func FreePort(t testing.TB, host string) int {
	t.Helper()
	return FreePortOn(t, host)
}

// FreePortOn returns a port that is free on every host listed, so that
// several loopback "pods" can share one target port like real pods do.
func FreePortOn(t testing.TB, hosts ...string) int {
	t.Helper()
	port, err := FreePortOnAll(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePortOnAll is FreePortOn outside a test.
func FreePortOnAll(hosts ...string) (int, error) {
	return freeport.On(hosts...)
}

// WaitHTTP polls url until it answers 200 or the timeout passes.
func WaitHTTP(ctx context.Context, t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", url, resp.StatusCode)
		}
		return nil
	})
}

// Eventually retries f every 50 ms until it returns nil or timeout passes,
// then fails the test with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
