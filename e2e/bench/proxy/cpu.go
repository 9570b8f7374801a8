package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// procCPU returns the CPU time (user + system) used so far by pid and its
// child processes (nginx's workers), or false where /proc is not there.
func procCPU(pid int) (time.Duration, bool) {
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

func statCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields count from after
	// its closing parenthesis, where field 3 (state) is the first.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * time.Second / userHZ, true
}

// cpuMeter measures the CPU a set of processes uses during a measurement.
type cpuMeter struct {
	pids  []int
	start time.Duration
	ok    bool
}

func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, ok: len(pids) > 0}
	m.start, m.ok = m.read()
	return m
}

func (m *cpuMeter) read() (time.Duration, bool) {
	var sum time.Duration
	for _, p := range m.pids {
		c, ok := procCPU(p)
		if !ok {
			return 0, false
		}
		sum += c
	}
	return sum, len(m.pids) > 0
}

// perRequest returns the CPU used since start divided by n requests, 0
// when it cannot be measured.
func (m *cpuMeter) perRequest(n int) time.Duration {
	end, ok := m.read()
	if !ok || !m.ok || n <= 0 {
		return 0
	}
	return (end - m.start) / time.Duration(n)
}
