package inferencealpha

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// moduleDir locates a module version in the module cache (downloading it if
// needed) the same way the CRD installer does.
func moduleDir(t *testing.T, version string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api-inference-extension@"+version).Output()
	if err != nil {
		t.Skipf("module %s not available: %v", version, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Skipf("module %s not available: %s", version, out)
	}
	return m.Dir
}

// TestTypesCoverCRDs checks every property the published CRD schemas allow
// under spec and status exists in our types with the same JSON name, so
// strict decoding never rejects a valid object and nothing is silently lost.
func TestTypesCoverCRDs(t *testing.T) {
	cases := []struct {
		version, file string
		obj           any
	}{
		{"v1.5.0", "inference.networking.x-k8s.io_inferenceobjectives.yaml", InferenceObjective{}},
		{"v1.5.0", "inference.networking.x-k8s.io_inferencemodelrewrites.yaml", InferenceModelRewrite{}},
		{"v0.5.1", "inference.networking.x-k8s.io_inferencemodels.yaml", InferenceModel{}},
		{"v0.5.1", "inference.networking.x-k8s.io_inferencepools.yaml", InferencePool{}},
	}
	for _, c := range cases {
		t.Run(c.version+"/"+c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(moduleDir(t, c.version), "config", "crd", "bases", c.file))
			if err != nil {
				t.Fatal(err)
			}
			var crd struct {
				Spec struct {
					Group    string
					Versions []struct {
						Name   string
						Schema struct {
							OpenAPIV3Schema crdSchema `json:"openAPIV3Schema"`
						}
					}
				}
			}
			if err := yaml.Unmarshal(data, &crd); err != nil {
				t.Fatal(err)
			}
			if crd.Spec.Group != Group {
				t.Fatalf("group %s", crd.Spec.Group)
			}
			found := false
			for _, v := range crd.Spec.Versions {
				if v.Name != Version {
					continue
				}
				found = true
				root := v.Schema.OpenAPIV3Schema
				typ := reflect.TypeOf(c.obj)
				for _, part := range []string{"spec", "status"} {
					if s, ok := root.Properties[part]; ok {
						f, ok := jsonField(typ, part)
						if !ok {
							t.Errorf("%s: no field", part)
							continue
						}
						cover(t, part, f, s)
					}
				}
			}
			if !found {
				t.Fatalf("CRD has no version %s", Version)
			}
		})
	}
}

type crdSchema struct {
	Type       string               `json:"type"`
	Properties map[string]crdSchema `json:"properties"`
	Items      *crdSchema           `json:"items"`
}

func cover(t *testing.T, path string, typ reflect.Type, s crdSchema) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	switch s.Type {
	case "array":
		if s.Items != nil {
			cover(t, path+"[]", typ, *s.Items)
		}
	case "object":
		if typ.Kind() != reflect.Struct {
			return // maps and metav1.Condition-like leaves
		}
		for name, sub := range s.Properties {
			f, ok := jsonField(typ, name)
			if !ok {
				t.Errorf("%s.%s: allowed by the CRD, missing from %s", path, name, typ)
				continue
			}
			cover(t, path+"."+name, f, sub)
		}
	}
}

// jsonField finds the type of the field with JSON name name, looking into
// inlined embedded structs.
func jsonField(typ reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := strings.Split(f.Tag.Get("json"), ",")
		if tag[0] == name {
			return f.Type, true
		}
		if tag[0] == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			if ft, ok := jsonField(f.Type, name); ok {
				return ft, true
			}
		}
	}
	return nil, false
}

func TestSchemeAndDeepCopy(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	gvks, _, err := s.ObjectKinds(&InferenceModel{})
	if err != nil || len(gvks) != 1 || gvks[0].Kind != KindInferenceModel || gvks[0].GroupVersion() != GroupVersion() {
		t.Fatalf("kinds %v, %v", gvks, err)
	}
	w := int32(3)
	a := &InferenceModel{Spec: InferenceModelSpec{ModelName: "m", TargetModels: []LegacyTargetModel{{Name: "t", Weight: &w}}}}
	b := a.DeepCopyObject().(*InferenceModel)
	*b.Spec.TargetModels[0].Weight = 4
	if *a.Spec.TargetModels[0].Weight != 3 {
		t.Fatal("DeepCopy shares memory")
	}
	// Unstructured conversion, as the Kubernetes source does with dynamic
	// informers.
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(a)
	if err != nil {
		t.Fatal(err)
	}
	var back InferenceModel
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, &back); err != nil || back.Spec.ModelName != "m" {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
