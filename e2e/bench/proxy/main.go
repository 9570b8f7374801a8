// Command proxy benchmarks what the infergate proxy adds to a request, in
// one run against the same backend: a direct connection, infergate's
// request path, and nginx (least_conn, keepalive upstream) as the baseline.
// Cases: a 1 KB JSON chat request, an SSE response of 200 events, and a
// 220 KB prompt at concurrency 150; the latency cases also run against
// infergate with an external endpoint picker (ext_proc) to show what that
// path costs. It writes a Markdown report (default
// e2e/bench/results/proxy.md) and prints the ratios.
//
//	go run ./bench/proxy            # from e2e/, about two minutes
//	go run ./bench/proxy -short     # a quick smoke run
//	go run ./bench/proxy -upstream-http1 stdlib   # infergate on httputil.ReverseProxy
//	go run ./bench/proxy -http1-server stdlib     # infergate on net/http's server
//
// Backend, proxy and nginx each run as their own process (the command
// re-executes itself for the first two), so the load generator does not
// share a Go runtime with what it measures; they do share the machine's
// cores, which the report states.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/upstream"
	"github.com/infergate/infergate/proto/freeport"
)

func main() {
	var (
		role     = flag.String("role", "", "internal: backend, proxy, plain or picker (child processes)")
		picker   = flag.String("picker", "", "internal: the endpoint picker's address for a proxy child (its pool then asks it over ext_proc)")
		addr     = flag.String("addr", "", "internal: listen address of a child")
		backend  = flag.String("backend", "", "internal: backend address for the proxy child")
		out      = flag.String("out", "", "Markdown report path (default <repo>/e2e/bench/results/proxy.md)")
		dur      = flag.Duration("duration", 4*time.Second, "length of each measurement")
		rate     = flag.Int("rate", 1000, "fixed request rate for the latency cases (req/s)")
		sseRate  = flag.Int("sse-rate", 200, "fixed request rate for the SSE latency case (req/s)")
		conc     = flag.Int("concurrency", 64, "workers of the max-throughput cases")
		largeC   = flag.Int("large-concurrency", 150, "workers of the large-prompt case")
		largeKB  = flag.Int("large-kb", 220, "size of the large prompt in KB")
		largeTT  = flag.Duration("large-ttft", 150*time.Millisecond, "the backend's own time to first token in the large-prompt case, like a model server's prefill (the published reference measured 158 ms); large-saturated answers at once")
		short    = flag.Bool("short", false, "quick smoke run (1 s measurements)")
		nginxOff = flag.Bool("no-nginx", false, "skip the nginx baseline")
		profile  = flag.String("proxy-cpuprofile", "", "write the infergate proxy's CPU profile to this file")
		h1client = flag.String("upstream-http1", "", "infergate's client for the HTTP/1.1 backend: lean or stdlib (default: the proxy's default)")
		h1server = flag.String("http1-server", "", "infergate's server for the clients' HTTP/1 connections: lean or stdlib (default: the proxy's default)")
		rounds   = flag.Int("rounds", 3, "rounds of every case (each round runs each case against every target in turn); the report shows per column the median over rounds, the counts summed")
		cases    = flag.String("cases", "json-rate,json-max,sse-rate,sse-max,large,large-saturated", "comma-separated cases to run")
		xpCases  = flag.String("ext-proc-cases", "json-rate,large", "cases also run against infergate with an external endpoint picker (ext_proc); empty: none")
	)
	flag.Parse()
	// Parsed once here: the proxy child serves with these modes and the
	// report names and explains them.
	clientMode, err := upstream.ParseHTTP1Mode(*h1client)
	if err != nil {
		log.Fatal(err)
	}
	serverMode, err := http1.ParseMode(*h1server)
	if err != nil {
		log.Fatal(err)
	}
	switch *role {
	case "backend":
		log.Fatal(runBackend(*addr))
	case "plain":
		log.Fatal(runPlain(*addr, *backend))
	case "picker":
		log.Fatal(runPicker(*addr, *backend))
	case "proxy":
		_, p, _ := net.SplitHostPort(*addr)
		port, _ := strconv.Atoi(p)
		if err := runProxy(uint32(port), *backend, *picker, *profile, clientMode, serverMode); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *short {
		*dur = time.Second
	}
	if *out == "" {
		*out = filepath.Join(repoRoot(), "e2e", "bench", "results", "proxy.md")
	}
	if *rounds < 1 {
		log.Fatalf("-rounds %d: want at least 1", *rounds)
	}
	cfg := runConfig{rounds: *rounds, cases: map[string]bool{}, http1: clientMode, h1server: serverMode, dur: *dur, rate: *rate, sseRate: *sseRate, conc: *conc, largeConc: *largeC, largeSize: *largeKB << 10, largeTTFT: *largeTT}
	for _, c := range strings.Split(*cases, ",") {
		cfg.cases[strings.TrimSpace(c)] = true
	}
	if *xpCases != "" {
		cfg.extProcCases = map[string]bool{}
		for _, c := range strings.Split(*xpCases, ",") {
			cfg.extProcCases[strings.TrimSpace(c)] = true
		}
	}
	if err := run(cfg, *out, !*nginxOff, *profile); err != nil {
		log.Fatal(err)
	}
}

type runConfig struct {
	rounds                         int
	cases                          map[string]bool
	http1                          upstream.HTTP1Mode
	h1server                       http1.Mode
	dur                            time.Duration
	rate, sseRate, conc, largeConc int
	largeSize                      int
	largeTTFT                      time.Duration
	// extProcCases run against extProcTarget too (nil: it does not run).
	extProcCases map[string]bool
}

func run(cfg runConfig, out string, withNginx bool, profile string) error {
	tmp, err := os.MkdirTemp("", "infergate-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	beAddr, pxAddr, ngAddr := freeAddr(), freeAddr(), freeAddr()
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = c.Process.Kill()
			}
		}
	}()
	start := func(args ...string) (int, error) {
		c := exec.Command(self, args...)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			return 0, err
		}
		children = append(children, c)
		return c.Process.Pid, nil
	}
	bePID, err := start("-role", "backend", "-addr", beAddr)
	if err != nil {
		return err
	}
	pxPID, err := start("-role", "proxy", "-addr", pxAddr, "-backend", beAddr, "-proxy-cpuprofile", profile, "-upstream-http1", string(cfg.http1), "-http1-server", string(cfg.h1server))
	if err != nil {
		return err
	}
	plainAddr := freeAddr()
	plainPID, err := start("-role", "plain", "-addr", plainAddr, "-backend", beAddr)
	if err != nil {
		return err
	}
	targets := []*target{newTarget("direct", "http://"+beAddr, 0), newTarget("infergate", "http://"+pxAddr, pxPID),
		newTarget("go-reverseproxy", "http://"+plainAddr, plainPID)}
	if cfg.extProcCases != nil {
		pkAddr, xpAddr := freeAddr(), freeAddr()
		pkPID, err := start("-role", "picker", "-addr", pkAddr, "-backend", beAddr)
		if err != nil {
			return err
		}
		xpPID, err := start("-role", "proxy", "-addr", xpAddr, "-backend", beAddr, "-picker", pkAddr, "-upstream-http1", string(cfg.http1), "-http1-server", string(cfg.h1server))
		if err != nil {
			return err
		}
		xp := newTarget(extProcTarget, "http://"+xpAddr, xpPID)
		xp.sidecarPID, xp.only = pkPID, cfg.extProcCases
		targets = append(targets, xp)
	}
	if withNginx {
		ng, err := startNginx(tmp, ngAddr, beAddr)
		if err != nil {
			return err
		}
		children = append(children, ng)
		targets = append(targets, newTarget("nginx", "http://"+ngAddr, ng.Process.Pid))
	}
	small := prompt(1<<10, false)
	for _, t := range targets {
		if err := waitReady(t, small); err != nil {
			return err
		}
	}
	rep := &report{cfg: cfg, targets: names(targets)}
	sse := prompt(1<<10, true)
	large := prompt(cfg.largeSize, true)
	for _, t := range targets { // warm connections and code paths
		t.closedLoop("/json", small, cfg.conc, cfg.dur/4)
		t.closedLoop("/ttft", large, cfg.largeConc, cfg.dur/4)
	}
	// The large-prompt target is about what a proxy adds in front of a
	// model server (the reference case: 158 ms TTFT at concurrency 150);
	// large-saturated answers at once, so 150 clients saturate the machine
	// and TTFT there tracks each proxy's throughput for large bodies.
	largeModel := fmt.Sprintf("/ttft?wait=%s", cfg.largeTTFT)
	// Each case runs against every target in turn, so the targets see the
	// same machine state as nearly as a shared box allows.
	rate := func(path string, body []byte, rps int) func(*target) stats {
		return func(t *target) stats { return summarize(t.fixedRate(path, body, rps, cfg.dur)) }
	}
	closed := func(path string, body []byte, conc int) func(*target) stats {
		return func(t *target) stats {
			ss, rps := t.closedLoop(path, body, conc, cfg.dur)
			st := summarize(ss)
			st.rps = rps
			return st
		}
	}
	type benchCase struct {
		id, what string
		run      func(*target) stats
	}
	all := []benchCase{
		{"json-rate", fmt.Sprintf("1 KB JSON at %d req/s", cfg.rate), rate("/json", small, cfg.rate)},
		{"json-max", "1 KB JSON, max throughput", closed("/json", small, cfg.conc)},
		{"sse-rate", fmt.Sprintf("SSE 200 events at %d req/s", cfg.sseRate), rate("/sse", sse, cfg.sseRate)},
		{"sse-max", "SSE 200 events, max throughput", closed("/sse", sse, cfg.conc)},
		{"large", fmt.Sprintf("%d KB prompt at concurrency %d, backend TTFT %s", cfg.largeSize>>10, cfg.largeConc, cfg.largeTTFT), closed(largeModel, large, cfg.largeConc)},
		{"large-saturated", fmt.Sprintf("%d KB prompt at concurrency %d, backend answering at once", cfg.largeSize>>10, cfg.largeConc), closed("/ttft", large, cfg.largeConc)},
	}
	// Rounds are the outer loop, so a minute of load from elsewhere on a
	// shared machine spoils one round of a case, not every measurement of
	// it; the report takes medians over rounds.
	for round := 1; round <= cfg.rounds; round++ {
		for _, c := range all {
			if !cfg.cases[c.id] {
				continue
			}
			for _, t := range targets {
				if t.only != nil && !t.only[c.id] {
					continue
				}
				log.Printf("round %d/%d %s: %s", round, cfg.rounds, t.name, c.what)
				px, be, lg := startTreeCPU(t.pid), startCPU(bePID), startCPU(os.Getpid())
				var sc *cpuMeter
				if t.sidecarPID != 0 {
					sc = startCPU(t.sidecarPID)
				}
				st := c.run(t)
				ok := st.n - st.errors
				st.proxyCPU, st.backendCPU, st.loadCPU = px.perRequest(ok), be.perRequest(ok), lg.perRequest(ok)
				if sc != nil {
					st.sidecarCPU = sc.perRequest(ok)
				}
				rep.add(c.id, t.name, st)
			}
		}
	}
	text := rep.markdown()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Print(rep.summary())
	fmt.Println("report:", out)
	return nil
}

func names(ts []*target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.name)
	}
	return out
}

func waitReady(t *target, body []byte) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if s := t.do("/json", body); s.ok {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s at %s did not answer within 15s", t.name, t.base)
}

func freeAddr() string {
	port, err := freeport.On()
	if err != nil {
		log.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// repoRoot walks up from the working directory to the directory holding
// go.work.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
