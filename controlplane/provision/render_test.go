package provision

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/proto/tracing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the current output")

const testImage = "ghcr.io/infergate/proxy:test"

// TestRenderGolden renders testdata/*.in.yaml (a GatewayClass, a Gateway
// and the parameter ConfigMaps they reference: class parameters are named
// "class-params", Gateway parameters "gateway-params"; a ConfigMap named
// "render-options" sets RenderOptions' xdsCACert, xdsServerName,
// tokenAudience and extraPorts, comma-separated) and compares with
// *.out.yaml. Regenerate with `go test ./provision -run Golden -update`.
func TestRenderGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			got := renderFile(t, in)
			out := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered output (run with -update and review the diff):\n%s", out, got)
			}
		})
	}
}

func renderFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		gw    gwapiv1.Gateway
		class gwapiv1.GatewayClass
		data  []map[string]string
		opts  = RenderOptions{XDSAddress: "infergate-controlplane.infergate-system.svc:18000"}
	)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		js, _ := yaml.Marshal(doc)
		switch doc["kind"] {
		case "Gateway":
			must(t, yaml.Unmarshal(js, &gw))
		case "GatewayClass":
			must(t, yaml.Unmarshal(js, &class))
		case "ConfigMap":
			var cm corev1.ConfigMap
			must(t, yaml.Unmarshal(js, &cm))
			// Class parameters first: the Gateway's override them.
			if cm.Name == "render-options" {
				opts.XDSCACert = []byte(cm.Data["xdsCACert"])
				opts.XDSServerName = cm.Data["xdsServerName"]
				opts.TokenAudience = cm.Data["tokenAudience"]
				if ep := cm.Data["tracingEndpoint"]; ep != "" {
					ratio, err := strconv.ParseFloat(cm.Data["tracingSampleRatio"], 64)
					must(t, err)
					opts.Tracing = tracing.Options{Endpoint: ep, SampleRatio: ratio, ParentBased: true}
				}
				for _, f := range strings.FieldsFunc(cm.Data["extraPorts"], func(r rune) bool { return r == ',' }) {
					port, err := strconv.ParseInt(f, 10, 32)
					must(t, err)
					opts.ExtraPorts = append(opts.ExtraPorts, int32(port))
				}
			} else if cm.Name == "class-params" {
				data = append([]map[string]string{cm.Data}, data...)
			} else {
				data = append(data, cm.Data)
			}
		}
	}
	p, err := ParseParams(testImage, data...)
	if err != nil {
		return []byte("error: " + err.Error() + "\n")
	}
	objs, err := Render(&gw, &class, p, opts)
	if err != nil {
		return []byte("error: " + err.Error() + "\n")
	}
	var b bytes.Buffer
	for i, o := range objs.List() {
		if i > 0 {
			b.WriteString("---\n")
		}
		u, err := ApplyConfig(o)
		must(t, err)
		y, err := yaml.Marshal(u.Object)
		must(t, err)
		b.Write(y)
	}
	return b.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseParams(t *testing.T) {
	p, err := ParseParams("img")
	if err != nil {
		t.Fatal(err)
	}
	if p.Replicas != 2 || p.MaxReplicas != 10 || p.CPUTarget != 80 || !p.Autoscaling || p.ServiceType != corev1.ServiceTypeLoadBalancer {
		t.Errorf("defaults = %+v", p)
	}
	p, err = ParseParams("img", map[string]string{"replicas": "4", "serviceType": "NodePort"}, map[string]string{"replicas": "12"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Replicas != 12 || p.MaxReplicas != 12 || p.ServiceType != corev1.ServiceTypeNodePort {
		t.Errorf("merged = %+v", p)
	}
	for _, bad := range []map[string]string{
		{"replicas": "0"},
		{"replicas": "two"},
		{"replicas": "5", "maxReplicas": "3"},
		{"serviceType": "ExternalName"},
		{"cpuRequest": "lots"},
		{"replica": "3"},
		{"autoscaling": "maybe"},
		{"cpuRequest": ""},
		{"tokenizers": "s3://bucket"},
		{"tokenizers": "pvc:Not_A_Name"},
		{"tokenizers": "image:"},
	} {
		if _, err := ParseParams("img", bad); err == nil {
			t.Errorf("ParseParams(%v) accepted", bad)
		}
	}
	if _, err := ParseParams(""); err == nil {
		t.Error("no image accepted")
	}
}

func TestObjectName(t *testing.T) {
	if got := ObjectName("gw", "infergate"); got != "gw-infergate" {
		t.Errorf("ObjectName = %q", got)
	}
	long := ObjectName(strings.Repeat("a", 60), "infergate")
	if len(long) != 63 || long == ObjectName(strings.Repeat("a", 61), "infergate") {
		t.Errorf("long name %q (%d)", long, len(long))
	}
}
