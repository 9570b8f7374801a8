package file

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/controlplane/translate"
)

// FuzzDecode feeds arbitrary bytes to the manifest decoder and the
// translator: neither may panic, whatever a file holds.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(gatewayYAML))
	f.Add([]byte(poolYAML))
	f.Add([]byte(gatewayYAML + "---\n" + routeYAML))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n"))
	// The translator's golden inputs cover every kind and most fields.
	golden, _ := filepath.Glob(filepath.Join("..", "..", "translate", "testdata", "*.in.yaml"))
	for _, g := range golden {
		if data, err := os.ReadFile(g); err == nil {
			f.Add(data)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &translate.Inputs{}
		if err := decodeFile("fuzz.yaml", data, in, log); err != nil {
			return
		}
		out := translate.Translate(in, translate.Options{})
		if _, err := translate.RenderYAML(out); err != nil {
			t.Fatalf("render: %v", err)
		}
	})
}
