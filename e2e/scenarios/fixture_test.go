package scenarios

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

// gatewayYAML is the GatewayClass and the Gateway "default/gw" with one
// HTTP listener on {{.GatewayPort}} that the file-mode fixtures route
// through; each appends its own routes, pools and pods.
const gatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: {{.GatewayPort}}}]
---
`

// fleetYAML describes a gateway, a route to an inference pool and its pods,
// the way a user writes them; pods point at simulated model servers on
// loopback addresses.
const fleetYAML = gatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: chat
  namespace: default
spec:
  parentRefs:
    - name: gw
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /v1/chat
      backendRefs:
        - group: inference.networking.k8s.io
          kind: InferencePool
          name: pool
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: default
spec:
  selector:
    matchLabels:
      app: sim
  targetPorts:
    - number: {{.PodPort}}
`

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: {{.Name}}
  namespace: default
  labels:
    app: sim
spec:
  containers:
    - name: sim
      image: modelsim
status:
  phase: Running
  podIP: {{.IP}}
  conditions:
    - type: Ready
      status: "True"
`

const completionsRouteYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: completions
  namespace: default
spec:
  parentRefs:
    - name: gw
  rules:
    - matches:
        - path:
            type: Exact
            value: /v1/completions
      backendRefs:
        - group: inference.networking.k8s.io
          kind: InferencePool
          name: pool
`

// distinctPrompt returns a prompt that differs from every other one from
// its first characters: identical prompts share their first KV block, and
// prefix affinity rightly keeps them on the replica that cached it, while
// these tests need traffic spread the way distinct users' requests are.
func distinctPrompt(text string) string {
	return fmt.Sprintf("[%x] %s", rand.Uint64(), text)
}

func render(t testing.TB, tmpl string, data any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := template.Must(template.New("").Parse(tmpl)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeFile writes atomically (temp + rename) so the control plane's watcher
// never reads a half-written file.
func writeFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func podFile(i int) string { return fmt.Sprintf("pod-%d.yaml", i) }

func writePod(t testing.TB, dir string, i int, ip string) {
	writeFile(t, dir, podFile(i), render(t, podYAML, map[string]string{"Name": fmt.Sprintf("sim-%d", i), "IP": ip}))
}

func removeFile(t testing.TB, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func hostOf(endpoint string) string {
	if i := strings.LastIndex(endpoint, ":"); i >= 0 {
		return endpoint[:i]
	}
	return endpoint
}
