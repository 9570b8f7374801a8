package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/dataplane/pipeline"
)

func TestDefaultBodyBudget(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v2 := write("v2", "2147483648\n")
	unlimited := write("max", "max\n")
	v1unlimited := write("v1", "9223372036854771712\n")
	for _, tc := range []struct {
		files []string
		want  int64
	}{
		{[]string{v2}, 512 << 20},
		{[]string{filepath.Join(dir, "absent"), v2}, 512 << 20},
		{[]string{unlimited, v2}, pipeline.DefaultBodyBudget},
		{[]string{v1unlimited}, pipeline.DefaultBodyBudget},
		{[]string{write("small", "134217728")}, 64 << 20},
		{nil, pipeline.DefaultBodyBudget},
	} {
		if got := bodyBudgetFor(memoryLimit(tc.files)); got != tc.want {
			t.Errorf("%v: budget %d, want %d", tc.files, got, tc.want)
		}
	}
}
