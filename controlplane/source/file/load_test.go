package file

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
# a comment-only document is skipped
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, port: 8080, protocol: HTTP}]
`

const poolYAML = `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: models}
spec:
  selector: {matchLabels: {app: m}}
  targetPorts: [{number: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
apiVersion: v1
kind: Pod
metadata: {name: m-0, namespace: models, labels: {app: m}}
status: {podIP: 127.0.0.11, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: chat, namespace: models}
spec: {modelName: chat, criticality: Critical, poolRef: {name: pool}}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {tls.crt: abc}
`

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gatewayYAML)
	write(t, filepath.Join(dir, "sub", "deeper", "pool.yml"), poolYAML)
	write(t, filepath.Join(dir, "README.md"), "not yaml: [")
	write(t, filepath.Join(dir, ".hidden", "x.yaml"), "not: [valid")

	var logs bytes.Buffer
	in, err := Load(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.GatewayClasses) != 1 || len(in.Gateways) != 1 || len(in.InferencePools) != 1 ||
		len(in.Pods) != 1 || len(in.InferenceModels) != 1 || len(in.Secrets) != 1 {
		t.Fatalf("unexpected counts: %+v", in)
	}
	if ns := in.Gateways[0].Namespace; ns != "default" {
		t.Errorf("gateway namespace %q, want default", ns)
	}
	if ns := in.InferencePools[0].Namespace; ns != "models" {
		t.Errorf("pool namespace %q, want models", ns)
	}
	if got := string(in.Secrets[0].Data["tls.crt"]); got != "abc" {
		t.Errorf("secret stringData not folded into data: %q", got)
	}
	if in.Pods[0].Status.PodIP != "127.0.0.11" {
		t.Errorf("pod status not decoded")
	}
	if !strings.Contains(logs.String(), "kind=Deployment") {
		t.Errorf("unknown kind not logged: %s", logs.String())
	}
}

func TestLoadErrorsNameFileDocumentAndLine(t *testing.T) {
	cases := []struct {
		name, data, want string
	}{
		{
			name: "syntax",
			data: gatewayYAML + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
			// The 4th document starts on line 15; its line 4 is file line 18.
			want: "document 4 (line 18): error converting YAML to JSON: yaml: line 18:",
		},
		{
			name: "unknown field",
			data: gatewayYAML + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n",
			want: `document 4 (line 15): error unmarshaling JSON: while decoding JSON: json: unknown field "portz"`,
		},
		{
			name: "missing kind",
			data: "apiVersion: v1\nmetadata: {name: x}\n",
			want: "document 1 (line 1): apiVersion and kind are required",
		},
		{
			name: "missing name",
			data: "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n",
			want: "document 1 (line 1): metadata.name is required",
		},
		{
			name: "wrong type",
			data: "---\napiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\nspec: {targetPorts: 8000}\n",
			want: "document 2 (line 2)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bad.yaml")
			write(t, path, c.data)
			_, err := Load(dir, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %s and %q", err, path, c.want)
			}
		})
	}
}

func TestSplitDocumentsLines(t *testing.T) {
	docs := splitDocuments([]byte("a: 1\n---\nb: 2\nc: 3\n--- # x\nd: 4\n"))
	if len(docs) != 3 {
		t.Fatalf("got %d documents", len(docs))
	}
	for i, want := range []int{1, 3, 6} {
		if docs[i].line != want || docs[i].index != i+1 {
			t.Errorf("document %d: line %d index %d, want line %d", i, docs[i].line, docs[i].index, want)
		}
	}
}
