package deploycheck_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfiles checks by reading (there is no Docker engine in the test
// environment) what the images promise: a Go build stage on the pinned Go
// version, a distroless nonroot runtime, a non-root USER, and the module
// files the go.work layout needs.
func TestDockerfiles(t *testing.T) {
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mustRead(t, "../../go.work"))
	if goVersion == nil {
		t.Fatal("no go directive in go.work")
	}
	for _, name := range []string{"controlplane", "proxy"} {
		path := "../../deploy/docker/" + name + ".Dockerfile"
		src := string(mustRead(t, path))
		var froms []string
		var user string
		for _, line := range strings.Split(src, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "FROM":
				froms = append(froms, f[len(f)-1])
				if f[len(f)-2] == "AS" {
					froms[len(froms)-1] = f[len(f)-3]
				}
			case "USER":
				user = f[1]
			}
		}
		if len(froms) != 2 || froms[0] != "golang:"+string(goVersion[1]) || !strings.HasPrefix(froms[1], "gcr.io/distroless/static") || !strings.HasSuffix(froms[1], ":nonroot") {
			t.Errorf("%s: stages %v, want golang:%s then distroless static nonroot", path, froms, goVersion[1])
		}
		if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
			t.Errorf("%s: USER %q, want a non-root uid", path, user)
		}
		// go.work lists every module: each go.mod must be in the context.
		for _, m := range []string{"proto", "controlplane", "dataplane", "e2e"} {
			if !strings.Contains(src, "COPY "+m+"/go.mod "+m+"/go.sum "+m+"/") {
				t.Errorf("%s: does not copy %s/go.mod and go.sum (go.work needs them)", path, m)
			}
		}
		if !strings.Contains(src, "CGO_ENABLED=0") {
			t.Errorf("%s: static binaries need CGO_ENABLED=0 on distroless/static", path)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
