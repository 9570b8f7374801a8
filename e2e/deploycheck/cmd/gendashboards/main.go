// Command gendashboards writes the Helm chart's Grafana dashboards
// (deploy/helm/infergate/dashboards) from deploycheck.DashboardFiles.
//
//	go run ./deploycheck/cmd/gendashboards -dir ../deploy/helm/infergate/dashboards
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infergate/infergate/e2e/deploycheck"
)

func main() {
	dir := flag.String("dir", "../deploy/helm/infergate/dashboards", "chart dashboard directory")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gendashboards:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := deploycheck.DashboardFiles()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, raw := range files {
		if err := deploycheck.ValidateDashboard(raw); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}
