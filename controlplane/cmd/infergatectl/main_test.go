package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestTranslateGolden runs the offline translator on the quick-start
// directory; testdata/quickstart.out.yaml is regenerated with -update.
func TestTranslateGolden(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"translate", "-f", filepath.Join("..", "..", "..", "examples", "quickstart"), "-o", format}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		golden := filepath.Join("testdata", "quickstart.out."+format)
		if *update {
			if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stdout.Bytes(), want) {
			t.Errorf("translate -o %s differs from %s (rerun with -update if intended):\n%s", format, golden, stdout.String())
		}
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nmetadata: [oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"translate"}, exitUsage, "-f DIR|FILE is required"},
		{[]string{"translate", "-f", dir, "-o", "xml"}, exitUsage, `-o "xml"`},
		{[]string{"translate", "-f", bad}, exitFail, "bad.yaml"},
		{[]string{"snapshot", "--gateway", "nogw"}, exitUsage, "namespace/name"},
		// Nothing listens on port 1: the request fails, exit 1.
		{[]string{"gateways", "--server", "127.0.0.1:1"}, exitFail, "127.0.0.1:1"},
		{[]string{"proxy", "endpoints", "--proxy", "127.0.0.1:1"}, exitFail, "127.0.0.1:1"},
		{[]string{"translate", "--help"}, exitOK, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		all := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(all, tc.inStderr) {
			t.Errorf("infergatectl %v: exit %d, want %d with %q in output:\n%s", tc.args, code, tc.code, tc.inStderr, all)
		}
	}
}
