package translate_test

import (
	"bytes"
	"flag"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/source/file"
	"github.com/infergate/infergate/controlplane/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the translator's output")

// TestGolden translates every testdata/*.in.yaml and compares the rendered
// result with the matching *.out.yaml. Regenerate with `go test ./translate -update`.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			inputs, err := file.LoadFile(in, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			out := translate.Translate(inputs, translate.Options{})
			// Every gateway must make a valid snapshot (no empty or
			// duplicate names).
			if _, err := snapshot.BuildAll(out); err != nil {
				t.Fatal(err)
			}
			got := render(t, out)

			// The output must not depend on input order.
			shuffle(inputs)
			if again := render(t, translate.Translate(inputs, translate.Options{})); !bytes.Equal(got, again) {
				t.Fatalf("output depends on input order")
			}

			outPath := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", outPath, diff(string(want), string(got)))
			}
		})
	}
}

func render(t *testing.T, out *translate.Output) []byte {
	t.Helper()
	b, err := translate.RenderYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func shuffle(in *translate.Inputs) {
	r := rand.New(rand.NewPCG(1, 2))
	sh := func(n int, swap func(i, j int)) { r.Shuffle(n, swap) }
	sh(len(in.GatewayClasses), func(i, j int) {
		in.GatewayClasses[i], in.GatewayClasses[j] = in.GatewayClasses[j], in.GatewayClasses[i]
	})
	sh(len(in.Gateways), func(i, j int) { in.Gateways[i], in.Gateways[j] = in.Gateways[j], in.Gateways[i] })
	sh(len(in.HTTPRoutes), func(i, j int) { in.HTTPRoutes[i], in.HTTPRoutes[j] = in.HTTPRoutes[j], in.HTTPRoutes[i] })
	sh(len(in.ReferenceGrants), func(i, j int) {
		in.ReferenceGrants[i], in.ReferenceGrants[j] = in.ReferenceGrants[j], in.ReferenceGrants[i]
	})
	sh(len(in.ListenerSets), func(i, j int) { in.ListenerSets[i], in.ListenerSets[j] = in.ListenerSets[j], in.ListenerSets[i] })
	sh(len(in.InferencePools), func(i, j int) {
		in.InferencePools[i], in.InferencePools[j] = in.InferencePools[j], in.InferencePools[i]
	})
	sh(len(in.Services), func(i, j int) { in.Services[i], in.Services[j] = in.Services[j], in.Services[i] })
	sh(len(in.EndpointSlices), func(i, j int) {
		in.EndpointSlices[i], in.EndpointSlices[j] = in.EndpointSlices[j], in.EndpointSlices[i]
	})
	sh(len(in.Pods), func(i, j int) { in.Pods[i], in.Pods[j] = in.Pods[j], in.Pods[i] })
	sh(len(in.Secrets), func(i, j int) { in.Secrets[i], in.Secrets[j] = in.Secrets[j], in.Secrets[i] })
	sh(len(in.Namespaces), func(i, j int) { in.Namespaces[i], in.Namespaces[j] = in.Namespaces[j], in.Namespaces[i] })
	sh(len(in.InferenceObjectives), func(i, j int) {
		in.InferenceObjectives[i], in.InferenceObjectives[j] = in.InferenceObjectives[j], in.InferenceObjectives[i]
	})
	sh(len(in.InferenceModelRewrites), func(i, j int) {
		in.InferenceModelRewrites[i], in.InferenceModelRewrites[j] = in.InferenceModelRewrites[j], in.InferenceModelRewrites[i]
	})
	sh(len(in.InferenceModels), func(i, j int) {
		in.InferenceModels[i], in.InferenceModels[j] = in.InferenceModels[j], in.InferenceModels[i]
	})
	sh(len(in.LegacyInferencePools), func(i, j int) {
		in.LegacyInferencePools[i], in.LegacyInferencePools[j] = in.LegacyInferencePools[j], in.LegacyInferencePools[i]
	})
}

// diff shows the first differing lines with a little context.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			var b strings.Builder
			for j := max(0, i-3); j < min(i+8, max(len(w), len(g))); j++ {
				if j < len(w) {
					b.WriteString("- " + w[j] + "\n")
				}
				if j < len(g) {
					b.WriteString("+ " + g[j] + "\n")
				}
			}
			return "at line " + strconv.Itoa(i+1) + ":\n" + b.String()
		}
	}
	return ""
}
