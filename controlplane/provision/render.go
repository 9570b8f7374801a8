// Package provision runs the proxies of each Gateway of our GatewayClass:
// for Gateway ns/name it keeps a ServiceAccount, Deployment, Service,
// HorizontalPodAutoscaler and PodDisruptionBudget in the Gateway's
// namespace, owned by the Gateway and sized from parameters (see
// params.go), and writes the Service's address to Gateway.status.addresses.
//
// Render is pure (golden-tested); Provisioner applies its output with
// server-side apply and deletes what is no longer wanted.
package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/proto/tracing"
)

// Labels on every provisioned object. The selector uses only LabelName and
// LabelGateway, so labels from spec.infrastructure can change freely.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"
	// LabelGateway is Gateway API's label for objects generated for a
	// Gateway (GEP-1762).
	LabelGateway = "gateway.networking.k8s.io/gateway-name"

	nameValue      = "infergate-proxy"
	managedByValue = "infergate"
)

// Proxy process settings the rendered Deployment relies on.
const (
	// drainSeconds is the proxy's --drain-timeout and shutdownDelaySeconds
	// its --shutdown-delay; the pod gets both plus a margin before SIGKILL.
	drainSeconds         = 30
	shutdownDelaySeconds = 5
	// unprivilegedPortSysctl lets a non-root proxy bind listener ports
	// below 1024 (a "safe" sysctl, allowed by the restricted policy).
	unprivilegedPortSysctl = "net.ipv4.ip_unprivileged_port_start"
	// The proxy's admin API (loopback only) and its probe endpoint (the
	// pod's address, /ready and /healthz only) sit on these ports, or the
	// next ones no listener uses.
	adminPort  = 19000
	healthPort = 19001
)

// Where the proxy finds its xDS credentials.
const (
	caDir     = "/etc/infergate/xds-ca"
	tokenDir  = "/var/run/secrets/infergate.dev/xds"
	tokenFile = "token"
	// CAKey is the key of the CA certificate in the provisioned ConfigMap.
	CAKey = "ca.crt"
	// AnnotationCAHash on the pod template rolls the proxies when the CA
	// they trust changes.
	AnnotationCAHash = "infergate.dev/xds-ca-sha256"
	tokenTTL         = 3600
)

// RenderOptions are the control-plane settings that go into every Gateway's
// objects.
type RenderOptions struct {
	// XDSAddress is the control plane's address as proxies dial it
	// (the chart's Service, host:port).
	XDSAddress string
	// XDSCACert (PEM), when set, is the CA proxies verify the control
	// plane's certificate with: copied into a ConfigMap in the Gateway's
	// namespace (a pod cannot mount another namespace's), mounted, and
	// passed as --xds-ca-file. Without it proxies dial in plaintext.
	XDSCACert []byte
	// XDSServerName is the name checked in the control plane's certificate
	// (default: the host of XDSAddress).
	XDSServerName string
	// TokenAudience, when set, mounts a projected ServiceAccount token bound
	// to it (the Gateway's own ServiceAccount) as --xds-token-file. Needs
	// XDSCACert: a token is never sent in plaintext.
	TokenAudience string
	// ExtraPorts are listener ports the Gateway's proxies serve beyond its
	// own listeners' (from ListenerSets; see ListenerPorts): Service and
	// container ports too.
	ExtraPorts []int32
	// Tracing is how proxies trace (their --tracing-* flags; off when
	// its Endpoint is empty).
	Tracing tracing.Options
}

// Objects are what one Gateway gets. HPA is nil when autoscaling is off,
// CA when RenderOptions.XDSCACert is empty.
type Objects struct {
	ServiceAccount *corev1.ServiceAccount
	CA             *corev1.ConfigMap
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	HPA            *autoscalingv2.HorizontalPodAutoscaler
	PDB            *policyv1.PodDisruptionBudget
}

// List returns the objects in apply order (the ServiceAccount and CA
// before the pods that use them).
func (o *Objects) List() []runtime.Object {
	out := []runtime.Object{o.ServiceAccount}
	if o.CA != nil {
		out = append(out, o.CA)
	}
	out = append(out, o.Deployment, o.Service)
	if o.HPA != nil {
		out = append(out, o.HPA)
	}
	return append(out, o.PDB)
}

// ObjectName is the name of every object provisioned for gw:
// <gateway>-<class>, as GEP-1762 suggests, shortened with a hash when it
// would exceed a DNS label.
func ObjectName(gatewayName, className string) string {
	name := gatewayName + "-" + className
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:52] + "-" + hex.EncodeToString(sum[:])[:10]
}

// ServiceAccountFor names ("namespace/name") the ServiceAccount of the
// proxies provisioned for Gateway namespace/gatewayName of class
// className: the identity xDS token checks should expect for it.
func ServiceAccountFor(namespace, gatewayName, className string) string {
	return namespace + "/" + ObjectName(gatewayName, className)
}

// SelectorLabels select the proxy pods of the Gateway named gatewayName.
func SelectorLabels(gatewayName string) map[string]string {
	return map[string]string{LabelName: nameValue, LabelGateway: gatewayName}
}

// Render returns the objects for gw of class with params p. It is pure: the
// same inputs give the same objects.
func Render(gw *gwapiv1.Gateway, class *gwapiv1.GatewayClass, p Params, opts RenderOptions) (*Objects, error) {
	if len(gw.Spec.Listeners) == 0 {
		return nil, fmt.Errorf("gateway %s/%s has no listeners", gw.Namespace, gw.Name)
	}
	if opts.TokenAudience != "" && len(opts.XDSCACert) == 0 {
		return nil, fmt.Errorf("a ServiceAccount token for xDS needs TLS (RenderOptions.XDSCACert)")
	}
	name := ObjectName(gw.Name, class.Name)
	labels, annotations := map[string]string{}, map[string]string{}
	if inf := gw.Spec.Infrastructure; inf != nil {
		for k, v := range inf.Labels {
			labels[string(k)] = string(v)
		}
		for k, v := range inf.Annotations {
			annotations[string(k)] = string(v)
		}
	}
	// Ours win over spec.infrastructure: the selector depends on them.
	maps.Copy(labels, SelectorLabels(gw.Name))
	labels[LabelManagedBy] = managedByValue
	labels[LabelComponent] = "proxy"
	if len(annotations) == 0 {
		annotations = nil
	}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name:        name,
			Namespace:   gw.Namespace,
			Labels:      maps.Clone(labels),
			Annotations: maps.Clone(annotations),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         gwapiv1.GroupVersion.String(),
				Kind:               "Gateway",
				Name:               gw.Name,
				UID:                gw.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}},
		}
	}
	ports := listenerPorts(gw, opts.ExtraPorts)
	o := &Objects{
		ServiceAccount: &corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: meta(),
			// The proxy does not call the API server; the xDS token it will
			// present is mounted as its own projected volume.
			AutomountServiceAccountToken: new(false),
		},
		Deployment: renderDeployment(meta(), gw, p, opts, ports),
		Service:    renderService(meta(), gw, p, ports),
		PDB: &policyv1.PodDisruptionBudget{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: meta(),
			Spec: policyv1.PodDisruptionBudgetSpec{
				// maxUnavailable (not minAvailable) so a single replica can
				// still be drained from its node.
				MaxUnavailable: new(intstr.FromInt32(1)),
				Selector:       &metav1.LabelSelector{MatchLabels: SelectorLabels(gw.Name)},
			},
		},
	}
	if len(opts.XDSCACert) > 0 {
		o.CA = &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(),
			Data:       map[string]string{CAKey: string(opts.XDSCACert)},
		}
	}
	if p.Autoscaling {
		o.HPA = &autoscalingv2.HorizontalPodAutoscaler{
			TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
			ObjectMeta: meta(),
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
				MinReplicas:    new(p.Replicas),
				MaxReplicas:    p.MaxReplicas,
				Metrics: []autoscalingv2.MetricSpec{{
					Type: autoscalingv2.ResourceMetricSourceType,
					Resource: &autoscalingv2.ResourceMetricSource{
						Name: corev1.ResourceCPU,
						Target: autoscalingv2.MetricTarget{
							Type:               autoscalingv2.UtilizationMetricType,
							AverageUtilization: new(p.CPUTarget),
						},
					},
				}},
			},
		}
	}
	return o, nil
}

// listenerPorts are the distinct ports of the Gateway's listeners and
// extra, ascending.
func listenerPorts(gw *gwapiv1.Gateway, extra []int32) []int32 {
	ports := slices.Clone(extra)
	for _, l := range gw.Spec.Listeners {
		ports = append(ports, l.Port)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// sparePort is want, or the next port after it that taken lacks.
func sparePort(taken []int32, want int32) int32 {
	for slices.Contains(taken, want) {
		want++
	}
	return want
}

func renderDeployment(meta metav1.ObjectMeta, gw *gwapiv1.Gateway, p Params, opts RenderOptions, ports []int32) *appsv1.Deployment {
	var containerPorts []corev1.ContainerPort
	for _, port := range ports {
		containerPorts = append(containerPorts, corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	admin := sparePort(ports, adminPort)
	health := sparePort(append(slices.Clone(ports), admin), healthPort)
	containerPorts = append(containerPorts, corev1.ContainerPort{Name: "health", ContainerPort: health, Protocol: corev1.ProtocolTCP})
	podSec := &corev1.PodSecurityContext{
		RunAsNonRoot:   new(true),
		RunAsUser:      new(int64(65532)),
		RunAsGroup:     new(int64(65532)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if ports[0] < 1024 {
		podSec.Sysctls = []corev1.Sysctl{{Name: unprivilegedPortSysctl, Value: "0"}}
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	podLabels := maps.Clone(meta.Labels)
	podAnnotations := maps.Clone(meta.Annotations)
	args := []string{
		"--gateway=" + gw.Namespace + "/" + gw.Name,
		"--xds-address=" + opts.XDSAddress,
		"--listen-address=0.0.0.0",
		fmt.Sprintf("--admin-address=127.0.0.1:%d", admin),
		fmt.Sprintf("--health-address=0.0.0.0:%d", health),
		"--log-format=json",
		// Endpoints of a terminating pod are withdrawn asynchronously: keep
		// serving new requests a moment before the listeners close.
		fmt.Sprintf("--shutdown-delay=%ds", shutdownDelaySeconds),
		fmt.Sprintf("--drain-timeout=%ds", drainSeconds),
	}
	args = append(args, opts.Tracing.Args()...)
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if len(opts.XDSCACert) > 0 {
		sum := sha256.Sum256(opts.XDSCACert)
		if podAnnotations == nil {
			podAnnotations = map[string]string{}
		}
		podAnnotations[AnnotationCAHash] = hex.EncodeToString(sum[:])
		args = append(args, "--xds-ca-file="+caDir+"/"+CAKey)
		if opts.XDSServerName != "" {
			args = append(args, "--xds-server-name="+opts.XDSServerName)
		}
		volumes = append(volumes, corev1.Volume{Name: "xds-ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: meta.Name}},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "xds-ca", MountPath: caDir, ReadOnly: true})
	}
	if opts.TokenAudience != "" {
		args = append(args, "--xds-token-file="+tokenDir+"/"+tokenFile)
		volumes = append(volumes, corev1.Volume{Name: "xds-token", VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
				ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: opts.TokenAudience, ExpirationSeconds: new(int64(tokenTTL)), Path: tokenFile,
				},
			}}},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "xds-token", MountPath: tokenDir, ReadOnly: true})
	}
	if p.Tokenizers != nil {
		volumes = append(volumes, corev1.Volume{Name: "tokenizers", VolumeSource: *p.Tokenizers})
		mounts = append(mounts, corev1.VolumeMount{Name: "tokenizers", MountPath: TokenizerDir, ReadOnly: true})
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: new(p.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(gw.Name)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            meta.Name,
					AutomountServiceAccountToken:  new(false),
					TerminationGracePeriodSeconds: new(int64(shutdownDelaySeconds + drainSeconds + 10)),
					SecurityContext:               podSec,
					Volumes:                       volumes,
					Containers: []corev1.Container{{
						Name:         "proxy",
						Image:        p.Image,
						Args:         args,
						VolumeMounts: mounts,
						Env:          []corev1.EnvVar{fieldEnv("POD_NAMESPACE", "metadata.namespace"), fieldEnv("POD_NAME", "metadata.name")},
						Ports:        containerPorts,
						Resources:    p.Resources,
						// Ready once the first complete snapshot is applied
						// (its listeners bound), unready from SIGTERM on. Not
						// "a listener port is open": a Gateway whose
						// listeners are all invalid binds none, and its
						// proxies must still become Ready.
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("health")}},
							PeriodSeconds: 2,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("health")}},
							PeriodSeconds:    10,
							FailureThreshold: 3,
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: new(false),
							ReadOnlyRootFilesystem:   new(true),
							RunAsNonRoot:             new(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew:           1,
						TopologyKey:       "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: SelectorLabels(gw.Name)},
					}},
				},
			},
		},
	}
}

func renderService(meta metav1.ObjectMeta, gw *gwapiv1.Gateway, p Params, ports []int32) *corev1.Service {
	var sp []corev1.ServicePort
	for _, port := range ports {
		sp = append(sp, corev1.ServicePort{
			Name:       fmt.Sprintf("tcp-%d", port),
			Port:       port,
			TargetPort: intstr.FromInt32(port),
			Protocol:   corev1.ProtocolTCP,
		})
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:     p.ServiceType,
			Selector: SelectorLabels(gw.Name),
			Ports:    sp,
		},
	}
	// A static address (spec.addresses) is asked of the load balancer with
	// loadBalancerIP, the field load-balancer controllers still honour
	// (deprecated for lack of dual-stack, not replaced). It takes one:
	// with more, or another Service type, none is asked for and the
	// Gateway says AddressNotUsable (translate).
	if static := translate.StaticAddresses(gw); len(static) == 1 && p.ServiceType == corev1.ServiceTypeLoadBalancer {
		svc.Spec.LoadBalancerIP = static[0]
	}
	return svc
}
