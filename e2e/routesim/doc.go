// Package routesim replays a workload through the proxy's pickers and a
// fleet of simulated model servers in virtual time: a discrete-event
// simulation in which every replica is the simulator's own scheduler
// (engine.Core, the same code modelsim serves over HTTP), every proxy has
// its own endpoint registry, scrapes and picker (the real dataplane/picker
// code, clocked by the simulation), and nothing sleeps. A minute of
// simulated traffic takes well under a second, the same inputs give the
// same result on a loaded machine as on an idle one, and workloads ×
// strategies × seeds can be swept where the wall-clock benchmark
// (e2e/bench, `make bench-routing`) can afford one run of each.
//
// What it leaves out is the HTTP path (the proxy's own latency, about
// 0.1 ms, is far below the simulated steps) and real concurrency: picks
// happen one at a time in event order. The wall-clock benchmark measures
// those; this one measures decisions.
package routesim
