package main

import (
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// treeCPU returns the CPU time (user + system) used so far by pid and its
// child processes (nginx's workers), or false where /proc is not there.
func treeCPU(pid int) (time.Duration, bool) {
	total, ok := statCPU(pid)
	if !ok {
		return 0, false
	}
	p := strconv.Itoa(pid)
	if kids, err := os.ReadFile("/proc/" + p + "/task/" + p + "/children"); err == nil {
		for _, k := range strings.Fields(string(kids)) {
			if n, err := strconv.Atoi(k); err == nil {
				if c, ok := statCPU(n); ok {
					total += c
				}
			}
		}
	}
	return total, true
}

// statCPU is one process's user + system CPU time, from /proc/<pid>/stat.
func statCPU(pid int) (time.Duration, bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return time.Duration(math.Round(st.CPUTime() * float64(time.Second))), true
}

// cpuMeter measures the CPU a process uses during a measurement.
type cpuMeter struct {
	pid   int
	read  func(pid int) (time.Duration, bool)
	start time.Duration
	ok    bool
}

// startCPU starts measuring pid alone; pid 0 (no process, as for direct)
// measures nothing. The load generator is measured this way: its children
// are the backend and the proxies, whose CPU is reported apart.
func startCPU(pid int) *cpuMeter { return startMeter(pid, statCPU) }

// startTreeCPU starts measuring pid with its child processes (a proxy:
// nginx's master and workers).
func startTreeCPU(pid int) *cpuMeter { return startMeter(pid, treeCPU) }

func startMeter(pid int, read func(int) (time.Duration, bool)) *cpuMeter {
	m := &cpuMeter{pid: pid, read: read}
	if pid != 0 {
		m.start, m.ok = read(pid)
	}
	return m
}

// perRequest returns the CPU used since start divided by n requests, 0
// when it cannot be measured.
func (m *cpuMeter) perRequest(n int) time.Duration {
	if !m.ok || n <= 0 {
		return 0
	}
	end, ok := m.read(m.pid)
	if !ok {
		return 0
	}
	return (end - m.start) / time.Duration(n)
}
