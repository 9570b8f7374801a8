// Command gencrds writes the Helm chart's CRDs (deploy/helm/infergate/crds)
// from the module cache at the pinned versions, or with -check fails when
// the committed files are stale.
//
//	go run ./deploycheck/cmd/gencrds -dir ../deploy/helm/infergate/crds [-check]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/infergate/infergate/e2e/deploycheck"
)

func main() {
	dir := flag.String("dir", "../deploy/helm/infergate/crds", "chart CRD directory")
	check := flag.Bool("check", false, "fail if the files in -dir are stale instead of writing them")
	flag.Parse()
	if err := run(context.Background(), *dir, *check); err != nil {
		fmt.Fprintln(os.Stderr, "gencrds:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, check bool) error {
	if !check {
		return deploycheck.WriteCRDs(ctx, dir)
	}
	stale, err := deploycheck.StaleCRDs(ctx, dir)
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		return fmt.Errorf("CRDs in %s are stale (%s): run 'make crds' and commit", dir, strings.Join(stale, ", "))
	}
	fmt.Println("chart CRDs up to date")
	return nil
}
