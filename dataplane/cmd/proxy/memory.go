package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/infergate/infergate/dataplane/pipeline"
)

// cgroupLimitFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// defaultBodyBudget sizes the buffered request body budget to the
// container: a quarter of its memory limit (the rest is the proxy's
// baseline, the responses it streams, and the garbage collector's
// headroom), at least 64 MiB; pipeline.DefaultBodyBudget when the
// container has no limit.
func defaultBodyBudget() int64 {
	return bodyBudgetFor(memoryLimit(cgroupLimitFiles))
}

func bodyBudgetFor(limit int64) int64 {
	if limit <= 0 {
		return pipeline.DefaultBodyBudget
	}
	return max(limit/4, 64<<20)
}

// memoryLimit is the first limit found in files, 0 when none (or
// "unlimited": cgroup v2's "max", v1's page-rounded maximum int64).
func memoryLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0
		}
		return n
	}
	return 0
}
