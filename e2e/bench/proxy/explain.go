package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/infergate/infergate/dataplane/http1"
	"github.com/infergate/infergate/dataplane/upstream"
)

// explain says, from the measured numbers, why each missed target is
// missed: which part is the HTTP stack's floor (the bare ReverseProxy and
// the Go backend show it) and which part is infergate's own work.
func (r *report) explain() []string {
	var out []string
	if l := r.explainLatency(); l != "" {
		out = append(out, l)
	}
	if l := r.explainP99(); l != "" {
		out = append(out, l)
	}
	if l := r.explainThroughput(); l != "" {
		out = append(out, l)
	}
	if l := r.explainTTFT(); l != "" {
		out = append(out, l)
	}
	return out
}

// rateCase returns the direct, infergate and bare ReverseProxy results of
// the 1 KB latency case, ok false when it did not run.
func (r *report) rateCase() (d, ig, gp stats, ok bool) {
	d, ig, ok = r.pair("json-rate")
	gp, ok3 := r.get("json-rate", "go-reverseproxy")
	return d, ig, gp, ok && ok3
}

func (r *report) explainLatency() string {
	d, ig, gp, ok := r.rateCase()
	if !ok || ig.p50-d.p50 <= goalAddedP50 {
		return ""
	}
	s := fmt.Sprintf("**Added p50 at %d req/s.** The machine is mostly idle at this rate, so the added latency is hand-offs and wake-ups, not CPU: "+
		"infergate adds %s ms, the bare `httputil.ReverseProxy` %s ms", r.cfg.rate, added(ig.p50-d.p50), added(gp.p50-d.p50))
	if ng, ok := r.get("json-rate", "nginx"); ok {
		s += fmt.Sprintf(", nginx %s ms", added(ng.p50-d.p50))
	}
	s += ". Through a proxy on `http.Transport` a request changes goroutines four times (the client connection's, " +
		"the upstream connection's writer and reader goroutines, and back), and on an idle machine each hand-off " +
		"may wake a parked thread; nginx serves both connections from one event loop."
	switch {
	case r.lean() && r.leanServer():
		s += " infergate's lean HTTP/1 server and lean upstream client keep the whole exchange on the client connection's goroutine (without " +
			"net/http's per-request background read) and make their socket reads and writes raw system calls (so an idle process does not " +
			"wake the runtime's sysmon thread on every request), but the exchange still parks twice on the network (for the client's request and for the " +
			"upstream's answer) and Go's netpoller has to wake it, often on a parked thread; each of its two writes also runs the receiving end's " +
			"loopback TCP path in the kernel within the write, as nginx's do."
	case r.lean():
		s += " infergate's lean upstream client keeps the request on one goroutine, but it still parks twice on the network (for the " +
			"client's request and for the upstream's answer) and Go's netpoller has to wake it, often on a parked thread."
	}
	if gp.p50-d.p50 > goalAddedP50 {
		s += " The bare ReverseProxy alone is above the goal, so the goal is below the floor of the net/http server and Transport it is built on."
	}
	return s
}

func (r *report) explainP99() string {
	d, ig, gp, ok := r.rateCase()
	if !ok || ig.p99-d.p99 <= goalAddedP99 {
		return ""
	}
	return fmt.Sprintf("**Added p99 at %d req/s.** The p99 of %d requests is its %d slowest: a request that waited for a CPU another process "+
		"(load generator, backend, another job) held. In the same run the bare ReverseProxy added %s ms at p99, infergate %s ms; compare them "+
		"across a few runs before reading a difference into one.", r.cfg.rate, ig.n, ig.n/100, added(gp.p99-d.p99), added(ig.p99-d.p99))
}

func (r *report) explainThroughput() string {
	ig, ok1 := r.get("json-max", "infergate")
	gp, ok2 := r.get("json-max", "go-reverseproxy")
	ng, ok3 := r.get("json-max", "nginx")
	if !ok1 || !ok2 || !ok3 || ng.rps <= 0 || ig.rps >= goalRPSRatio*ng.rps || ig.proxyCPU <= 0 || ng.proxyCPU <= 0 {
		return ""
	}
	d, _ := r.get("json-max", "direct")
	// At saturation the CPUs are the bottleneck: at nginx's rate the whole
	// machine spends ncpu/rps per request. Running at goalRPSRatio of that
	// rate leaves the proxy nginx's own share plus the difference.
	ncpu := float64(runtime.NumCPU())
	atNginx := time.Duration(ncpu / ng.rps * float64(time.Second))
	atGoal := time.Duration(ncpu / (goalRPSRatio * ng.rps) * float64(time.Second))
	allowance := ng.proxyCPU + atGoal - atNginx
	s := fmt.Sprintf("**Max req/s against nginx.** At saturation the %d shared CPUs are the limit, so throughput follows the CPU each request costs. "+
		"Per 1 KB request the infergate process used %s µs of CPU, the bare ReverseProxy %s µs and nginx %s µs; the backend — a net/http server with an "+
		"empty handler — used %s µs. Reaching %.1f× nginx's rate leaves the proxy about %s µs per request (nginx's own plus what the machine gains by "+
		"running %.0f%% slower).", runtime.NumCPU(), us(ig.proxyCPU), us(gp.proxyCPU), us(ng.proxyCPU), us(d.backendCPU), goalRPSRatio, us(allowance),
		(1-goalRPSRatio)*100)
	switch {
	case r.lean() && r.leanServer():
		s += fmt.Sprintf(" infergate serves its clients with its lean HTTP/1 server (one goroutine per connection, the response written straight "+
			"into the connection's buffer, no per-request background-read goroutine as in the backend's net/http server) and its backend with its "+
			"lean client, which writes and reads on the request's goroutine where the bare ReverseProxy's `http.Transport` hands each request to a "+
			"writer and a reader goroutine (the load generator, a plain `http.Transport` client, used %s µs per request)", us(d.loadCPU))
	case r.lean():
		s += fmt.Sprintf(" A proxy on Go's net/http is a net/http server (the backend's shows its cost, %s µs) plus an upstream client: infergate's "+
			"lean one writes and reads on the request's goroutine, where the bare ReverseProxy's `http.Transport` hands each request to a writer "+
			"and a reader goroutine (the load generator, a plain `http.Transport` client, used %s µs per request)", us(d.backendCPU), us(d.loadCPU))
	default:
		s += fmt.Sprintf(" A proxy on Go's net/http is a net/http server (the backend's shows its cost, %s µs) plus a net/http client (`http.Transport`, "+
			"with a writer and a reader goroutine per upstream connection; the load generator, a plain client, used %s µs per request)", us(d.backendCPU), us(d.loadCPU))
	}
	if diff := ig.proxyCPU - gp.proxyCPU; diff <= 0 {
		s += fmt.Sprintf(". infergate's process used %s µs less than the bare ReverseProxy (which sends the headers and the body of each request "+
			"in two writes), so its own work — body scan, routing, picking, response inspection, metrics — is not where the gap is.", signedUS(-diff)[1:])
	} else {
		s += fmt.Sprintf("; infergate's own work — body scan, routing, picking, response inspection, metrics — adds %s µs to the bare ReverseProxy.", us(diff))
	}
	if ig.loadCPU > 0 && ng.loadCPU > 0 && ig.loadCPU > ng.loadCPU {
		s += fmt.Sprintf(" The load generator also used %s µs per request through infergate against %s µs through nginx: on shared CPUs a "+
			"target that answers later makes its client cost more too, which the throughput ratio includes.", us(ig.loadCPU), us(ng.loadCPU))
	}
	switch {
	case r.lean() && r.leanServer() && ig.proxyCPU > allowance:
		s += fmt.Sprintf(" With its lean server and client infergate's process is %s µs above the allowance of %s µs: what is left is "+
			"mostly system calls (a read and a write on each of its two connections per request), the Go scheduler waking the goroutine "+
			"that parked on each read, and its own request path.", us(ig.proxyCPU-allowance), us(allowance))
	case r.lean() && ig.proxyCPU <= allowance:
		with := "the lean upstream client"
		if r.leanServer() {
			with = "its lean server and client"
		}
		s += fmt.Sprintf(" With %s infergate's process stays within the allowance (%s of %s µs): what holds the rate "+
			"back is the CPU the rest of the machine spends per request through it, such as the load generator's above.", with, us(ig.proxyCPU), us(allowance))
	case r.lean() && d.backendCPU > 0:
		s += fmt.Sprintf(" With the lean upstream client infergate's process is %s µs above the allowance of %s µs, of which a net/http "+
			"server alone (the backend's cost) takes %s µs.", us(ig.proxyCPU-allowance), us(allowance), us(d.backendCPU))
	case d.backendCPU > 0 && d.loadCPU > 0 && allowance < d.backendCPU+d.loadCPU:
		s += " A net/http server and client alone cost more than the allowance, so the goal needs an HTTP stack without per-request goroutine " +
			"hand-offs (an event-loop server, an upstream client that writes and reads on the caller's goroutine), not less work in the request path."
	}
	return s
}

// explainTTFT explains a missed large-prompt goal. In front of a backend
// with a model server's TTFT the machine is far from saturated, so what a
// proxy adds is its own store-and-forward of the prompt.
func (r *report) explainTTFT() string {
	dl, il, ok := r.pair("large")
	if !ok || il.firstP50-dl.firstP50 <= goalAddedTTFT {
		return ""
	}
	s := fmt.Sprintf("**Added TTFT for %d KB prompts.** At %.0f req/s (%d clients, backend TTFT %s) infergate added %s ms at p50 "+
		"and used %s µs of CPU per request; it reads the whole prompt before forwarding it (the model and the prompt's prefix choose the replica)",
		r.cfg.largeSize>>10, il.rps, r.cfg.largeConc, r.cfg.largeTTFT, added(il.firstP50-dl.firstP50), us(il.proxyCPU))
	if nl, ok := r.get("large", "nginx"); ok {
		s += fmt.Sprintf("; nginx, which buffers request bodies too, added %s ms with %s µs per request", added(nl.firstP50-dl.firstP50), us(nl.proxyCPU))
	}
	return s + "."
}

// explainSaturated reads the saturated large-prompt variant: a closed loop
// at saturation spends its time queueing (Little's law: time in the
// system ≈ clients ÷ throughput), so added TTFT follows the rate a proxy
// sustains for large bodies.
func (r *report) explainSaturated() string {
	dl, il, ok := r.pair("large-saturated")
	if !ok || dl.rps <= 0 {
		return ""
	}
	c := float64(r.cfg.largeConc)
	need := c / (c/dl.rps + goalAddedTTFT.Seconds())
	s := fmt.Sprintf("%d clients in a closed loop against a backend answering at once keep the machine saturated, so TTFT here is mostly "+
		"queueing: by Little's law it is about clients ÷ throughput, and +%s ms would need ≥ %.0f req/s where direct reaches %.0f. "+
		"infergate reached %.0f req/s", r.cfg.largeConc, ms(goalAddedTTFT), need, dl.rps, il.rps)
	nl, withNginx := r.get("large-saturated", "nginx")
	if withNginx {
		s += fmt.Sprintf(", nginx %.0f req/s", nl.rps)
	}
	s += fmt.Sprintf(". Every proxy copies each prompt through the kernel twice more (client → proxy, proxy → backend); per request the "+
		"infergate process used %s µs of CPU", us(il.proxyCPU))
	if withNginx {
		s += fmt.Sprintf(" and nginx %s µs", us(nl.proxyCPU))
	}
	return s + fmt.Sprintf(", the backend %s µs to read the same body once.", us(il.backendCPU))
}

// leanServer reports whether the run's infergate proxy served its clients
// with the lean HTTP/1 server.
func (r *report) leanServer() bool { return r.cfg.h1server == http1.Lean }

// lean reports whether the run's infergate proxy used the lean HTTP/1
// upstream client.
func (r *report) lean() bool { return r.cfg.http1 == upstream.HTTP1Lean }

func signedUS(d time.Duration) string {
	return fmt.Sprintf("%+.0f", float64(d)/float64(time.Microsecond))
}
