package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/infergate/infergate/dataplane/extproc/extproctest"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// extProcTarget is infergate with its pool's picking done by an external
// endpoint picker over ext_proc: what that path costs per request.
const extProcTarget = "infergate+ext_proc"

// runPicker serves a minimal endpoint picker on addr until the process
// ends: TLS with a self-signed certificate (pickers' default), and the
// conformance picker's behaviour (the headers answer after the last body
// message, an empty answer per body message, the response headers
// answered), always naming the backend. Its own work is next to nothing,
// so the target measures the proxy's side of the protocol and the round
// trip, not a scheduler.
func runPicker(addr, backend string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if _, err := extproctest.Serve(ln, false, extproctest.LWEPPLike(func(*extprocv3.ProcessingRequest) string { return backend })); err != nil {
		return err
	}
	select {}
}

// withPicker points the pool backend at the picker at addr (TLS, not
// verified: the picker's default and the proxy's).
func withPicker(rs []snapshotv1.Named, addr string) []snapshotv1.Named {
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	eps := &snapshotv1.Endpoints{Name: gateway + "/endpointpicker/bench/epp:9002", Endpoints: []*snapshotv1.Endpoint{{Address: host, Port: uint32(port)}}}
	for _, r := range rs {
		if b, ok := r.(*snapshotv1.Backend); ok && b.GetName() == pool {
			b.EndpointPicker = &snapshotv1.EndpointPicker{Service: "bench/epp:9002", Endpoints: eps.Name}
		}
	}
	return append(rs, eps)
}

// extProcSection reports what the ext_proc path adds to infergate's own
// request path, in the cases it ran.
func (r *report) extProcSection(b *strings.Builder) {
	rows := r.extProcRows()
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "## External endpoint picker (ext_proc)\n\n")
	fmt.Fprintf(b, "`%s`: the same proxy with the pool's endpointPickerRef set, its picker a minimal ext_proc server in its own process "+
		"(TLS, self-signed; headers answered after the body, which it reads whole; no scheduling work), so the numbers are the protocol's cost: "+
		"a stream per request carrying the headers and the whole body, the answer, and the response headers' round trip.\n\n", extProcTarget)
	fmt.Fprintf(b, "| case | metric | infergate p50 ms | +ext_proc p50 ms | added p50 ms | infergate p99 ms | +ext_proc p99 ms | added p99 ms | proxy CPU µs/req (infergate → +ext_proc) | picker CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s → %s | %s |\n", row.what, row.metric, ms(row.ig50), ms(row.x50), added(row.x50-row.ig50),
			ms(row.ig99), ms(row.x99), added(row.x99-row.ig99), us(row.ig.proxyCPU), us(row.x.proxyCPU), us(row.x.sidecarCPU))
	}
	b.WriteString("\n")
}

type extProcRow struct {
	what, metric         string
	ig, x                stats
	ig50, ig99, x50, x99 time.Duration
}

func (r *report) extProcRows() []extProcRow {
	var rows []extProcRow
	for _, c := range []struct {
		id, what string
		first    bool
	}{
		{"json-rate", fmt.Sprintf("1 KB JSON at %d req/s", r.cfg.rate), false},
		{"large", fmt.Sprintf("%d KB prompt at concurrency %d", r.cfg.largeSize>>10, r.cfg.largeConc), true},
	} {
		ig, ok1 := r.get(c.id, "infergate")
		x, ok2 := r.get(c.id, extProcTarget)
		if !ok1 || !ok2 {
			continue
		}
		row := extProcRow{what: c.what, metric: "latency", ig: ig, x: x, ig50: ig.p50, ig99: ig.p99, x50: x.p50, x99: x.p99}
		if c.first {
			row.metric = "TTFT"
			row.ig50, row.ig99, row.x50, row.x99 = ig.firstP50, ig.firstP99, x.firstP50, x.firstP99
		}
		rows = append(rows, row)
	}
	return rows
}

// extProcVerdicts are the summary lines of the ext_proc cost.
func (r *report) extProcVerdicts() []string {
	var out []string
	for _, row := range r.extProcRows() {
		out = append(out, fmt.Sprintf("ext_proc adds %s ms p50 / %s ms p99 %s (%s) to infergate's own path; picker CPU %s µs/req",
			added(row.x50-row.ig50), added(row.x99-row.ig99), row.metric, row.what, us(row.x.sidecarCPU)))
	}
	return out
}
