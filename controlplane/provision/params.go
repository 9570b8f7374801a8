package provision

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Parameter keys of the ConfigMap a GatewayClass's spec.parametersRef or a
// Gateway's spec.infrastructure.parametersRef points to. A Gateway's
// ConfigMap overrides its class's key by key; missing keys take the
// defaults below.
const (
	// KeyImage is the proxy image (default: Options.Image).
	KeyImage = "image"
	// KeyReplicas is the proxy count, and the HPA's minimum (default 2).
	KeyReplicas = "replicas"
	// KeyMaxReplicas is the HPA's maximum (default max(10, replicas)).
	KeyMaxReplicas = "maxReplicas"
	// KeyCPUTarget is the HPA's average CPU utilization target in percent
	// of the CPU request (default 80).
	KeyCPUTarget = "cpuTarget"
	// KeyAutoscaling "false" renders no HPA: replicas is then fixed.
	KeyAutoscaling = "autoscaling"
	// KeyServiceType is the proxy Service's type: LoadBalancer (default),
	// NodePort or ClusterIP.
	KeyServiceType = "serviceType"
	// KeyCPURequest, KeyMemoryRequest, KeyCPULimit and KeyMemoryLimit size
	// the proxy container (defaults 250m, 128Mi, none, 1Gi).
	KeyCPURequest    = "cpuRequest"
	KeyMemoryRequest = "memoryRequest"
	KeyCPULimit      = "cpuLimit"
	KeyMemoryLimit   = "memoryLimit"
	// KeyTokenizers mounts model tokenizers (Hugging Face tokenizer.json
	// files) read-only at TokenizerDir in every proxy, for pools whose
	// picker profile names one in kvEvents.tokenizer.path:
	// "configMap:NAME" (a ConfigMap in the Gateway's namespace, each key a
	// file; ConfigMaps hold at most 1 MiB, less than most tokenizers),
	// "pvc:NAME" (a PersistentVolumeClaim, mounted read-only) or
	// "image:REFERENCE" (an OCI image's files, Kubernetes' image volumes).
	KeyTokenizers = "tokenizers"
)

// TokenizerDir is where KeyTokenizers' files appear in the proxies.
const TokenizerDir = "/etc/infergate/tokenizers"

var knownKeys = []string{KeyImage, KeyReplicas, KeyMaxReplicas, KeyCPUTarget, KeyAutoscaling, KeyServiceType,
	KeyCPURequest, KeyMemoryRequest, KeyCPULimit, KeyMemoryLimit, KeyTokenizers}

// Params size the objects provisioned for one Gateway.
type Params struct {
	Image       string
	Replicas    int32
	MaxReplicas int32
	CPUTarget   int32
	Autoscaling bool
	ServiceType corev1.ServiceType
	Resources   corev1.ResourceRequirements
	// Tokenizers is the volume KeyTokenizers names (nil: none).
	Tokenizers *corev1.VolumeSource
}

// ParseParams reads parameter ConfigMap data (later maps override earlier
// ones key by key) over the defaults. Unknown keys and bad values are
// errors, so a typo does not silently provision the defaults.
func ParseParams(defaultImage string, data ...map[string]string) (Params, error) {
	merged := map[string]string{}
	for _, d := range data {
		maps.Copy(merged, d)
	}
	p := Params{
		Image:       defaultImage,
		Replicas:    2,
		CPUTarget:   80,
		Autoscaling: true,
		ServiceType: corev1.ServiceTypeLoadBalancer,
	}
	res := map[string]string{KeyCPURequest: "250m", KeyMemoryRequest: "128Mi", KeyMemoryLimit: "1Gi"}
	var maxSet bool
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		v := strings.TrimSpace(merged[k])
		var err error
		switch k {
		case KeyImage:
			p.Image = v
		case KeyReplicas:
			p.Replicas, err = parseCount(v, 1)
		case KeyMaxReplicas:
			p.MaxReplicas, err = parseCount(v, 1)
			maxSet = true
		case KeyCPUTarget:
			p.CPUTarget, err = parseCount(v, 1)
		case KeyAutoscaling:
			p.Autoscaling, err = strconv.ParseBool(v)
		case KeyServiceType:
			switch t := corev1.ServiceType(v); t {
			case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
				p.ServiceType = t
			default:
				err = fmt.Errorf("want LoadBalancer, NodePort or ClusterIP")
			}
		case KeyCPURequest, KeyMemoryRequest, KeyCPULimit, KeyMemoryLimit:
			if v == "" {
				delete(res, k)
				continue
			}
			_, err = resource.ParseQuantity(v)
			res[k] = v
		case KeyTokenizers:
			p.Tokenizers, err = parseTokenizers(v)
		default:
			err = fmt.Errorf("unknown key (known: %s)", strings.Join(knownKeys, ", "))
		}
		if err != nil {
			return Params{}, fmt.Errorf("parameter %s=%q: %w", k, v, err)
		}
	}
	if p.Image == "" {
		return Params{}, fmt.Errorf("parameter %s: no proxy image configured", KeyImage)
	}
	if !maxSet {
		p.MaxReplicas = max(10, p.Replicas)
	}
	if p.MaxReplicas < p.Replicas {
		return Params{}, fmt.Errorf("parameter %s=%d is below %s=%d", KeyMaxReplicas, p.MaxReplicas, KeyReplicas, p.Replicas)
	}
	p.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for k, name := range map[string]corev1.ResourceName{KeyCPURequest: corev1.ResourceCPU, KeyMemoryRequest: corev1.ResourceMemory} {
		if v, ok := res[k]; ok {
			p.Resources.Requests[name] = resource.MustParse(v)
		}
	}
	for k, name := range map[string]corev1.ResourceName{KeyCPULimit: corev1.ResourceCPU, KeyMemoryLimit: corev1.ResourceMemory} {
		if v, ok := res[k]; ok {
			p.Resources.Limits[name] = resource.MustParse(v)
		}
	}
	if p.Autoscaling && p.Resources.Requests.Cpu().IsZero() {
		return Params{}, fmt.Errorf("parameter %s: autoscaling on CPU needs a CPU request", KeyCPURequest)
	}
	return p, nil
}

// parseTokenizers reads KeyTokenizers ("" = none).
func parseTokenizers(v string) (*corev1.VolumeSource, error) {
	if v == "" {
		return nil, nil
	}
	kind, name, _ := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	switch kind {
	case "configMap", "pvc":
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("%s name: %s", kind, strings.Join(errs, "; "))
		}
		if kind == "pvc" {
			return &corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name, ReadOnly: true}}, nil
		}
		return &corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}, nil
	case "image":
		if name == "" || strings.ContainsAny(name, " \t\n") {
			return nil, fmt.Errorf("image: want an image reference")
		}
		return &corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: name, PullPolicy: corev1.PullIfNotPresent}}, nil
	}
	return nil, fmt.Errorf("want configMap:NAME, pvc:NAME or image:REFERENCE")
}

func parseCount(v string, least int) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, err
	}
	if n < int64(least) {
		return 0, fmt.Errorf("must be at least %d", least)
	}
	return int32(n), nil
}
