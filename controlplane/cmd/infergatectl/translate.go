package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/controlplane/source/file"
	"github.com/infergate/infergate/controlplane/translate"
)

// runTranslate is the offline translator: the same loader and pure
// translator the control plane runs, with no cluster and no network.
func runTranslate(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("translate", "translate -f DIR|FILE [--controller-name NAME] [-o yaml|json]", stdout)
	path := fs.String("f", "", "a YAML file or a directory of them (required)")
	controller := fs.String("controller-name", translate.DefaultControllerName, "GatewayClass controllerName to translate for")
	out := fs.String("o", "yaml", "output: yaml or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"-f DIR|FILE is required"}
	}
	if *out != "yaml" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want yaml or json", *out)}
	}
	st, err := os.Stat(*path)
	if err != nil {
		return err
	}
	// The loader logs skipped kinds; keep stdout clean for the document.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var in *translate.Inputs
	if st.IsDir() {
		in, err = file.Load(*path, log)
	} else {
		in, err = file.LoadFile(*path, log)
	}
	if err != nil {
		return err
	}
	doc, err := translate.RenderYAML(translate.Translate(in, translate.Options{ControllerName: *controller}))
	if err != nil {
		return err
	}
	if *out == "json" {
		if doc, err = yaml.YAMLToJSON(doc); err != nil {
			return err
		}
		doc = append(doc, '\n')
	}
	_, err = stdout.Write(doc)
	return err
}
