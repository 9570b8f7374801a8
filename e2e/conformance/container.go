package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/infergate/infergate/e2e/harness"
)

// container is a pod's running workload — all its containers, sharing
// the pod's IP as a pod's containers share its network namespace: in-
// process echo servers, bin/proxy or endpoint picker processes, or
// nothing (images the suites do not need).
type container struct {
	pod     *corev1.Pod
	ip      string
	dir     string
	log     *podLog
	logFile *os.File
	started time.Time
	failed  error

	echos    []*echoServer
	procs    []*harness.Process
	forwards []*harness.Forwarder
	// probes are the containers' readiness probes: the pod is Ready when
	// all pass.
	probes []readinessProbe
}

// readinessProbe is one container's probe as the kubelet runs it: a TCP
// connect, an HTTP GET of path, or a gRPC health check of grpcService.
type readinessProbe struct {
	port        int
	path        string
	grpc        bool
	grpcService string
}

// What a container of the suite's base manifests runs. Only echo-basic's
// HTTP mode matters to the HTTP profile; its gRPC/TCP/UDP modes and
// coredns back GRPCRoute, TCPRoute and UDPRoute tests, which do not run.
func isEchoBasic(ct corev1.Container, env map[string]string) bool {
	// gcr.io/k8s-staging-gateway-api/echo-basic, registry.k8s.io/gateway-api/echo-basic, …
	name, _, _ := strings.Cut(ct.Image[strings.LastIndex(ct.Image, "/")+1:], ":")
	if name != "echo-basic" || !strings.Contains(ct.Image, "gateway-api/") {
		return false
	}
	return env["GRPC_ECHO_SERVER"] == "" && env["TCP_ECHO_SERVER"] == "" && env["UDP_ECHO_SERVER"] == ""
}

// startContainer starts every container of the pod; on a failure it
// stops those already started, so the next reconcile starts afresh.
func (n *node) startContainer(ctx context.Context, c *container) error {
	mounts, err := n.materializeVolumes(ctx, c)
	if err != nil {
		return err
	}
	c.probes = nil
	for _, ct := range c.pod.Spec.Containers {
		if err := n.startOne(c, ct, mounts); err != nil {
			c.stopParts()
			return fmt.Errorf("container %s: %w", ct.Name, err)
		}
		if p := ct.ReadinessProbe; p != nil {
			switch {
			case p.TCPSocket != nil:
				c.probes = append(c.probes, readinessProbe{port: containerPort(ct, p.TCPSocket.Port)})
			case p.HTTPGet != nil:
				c.probes = append(c.probes, readinessProbe{port: containerPort(ct, p.HTTPGet.Port), path: p.HTTPGet.Path})
			case p.GRPC != nil:
				rp := readinessProbe{port: int(p.GRPC.Port), grpc: true}
				if p.GRPC.Service != nil {
					rp.grpcService = *p.GRPC.Service
				}
				c.probes = append(c.probes, rp)
			}
		}
	}
	return nil
}

func (n *node) startOne(c *container, ct corev1.Container, mounts map[string]string) error {
	env := map[string]string{}
	for _, e := range ct.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = c.pod.Name
			case "metadata.namespace":
				env[e.Name] = c.pod.Namespace
			case "status.podIP":
				env[e.Name] = c.ip
			}
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
	}
	switch {
	case c.pod.Labels["app.kubernetes.io/name"] == proxyAppName:
		if len(c.pod.Spec.Containers) != 1 {
			return fmt.Errorf("proxy pods have one container, this one %d", len(c.pod.Spec.Containers))
		}
		return n.startProxy(c, ct, env, mounts)
	case isEchoBasic(ct, env):
		serverTLS, err := echoTLSConfig(env, mounts)
		if err != nil {
			return err
		}
		ports, err := echoPortsOf(env)
		if err != nil {
			return err
		}
		e, err := startEcho(c.ip, ports, echoIdentity{
			Namespace: env["NAMESPACE"], Ingress: env["INGRESS_NAME"], Service: env["SERVICE_NAME"], Pod: env["POD_NAME"],
		}, serverTLS, c.log)
		if err != nil {
			return err
		}
		c.echos = append(c.echos, e)
		return nil
	case isEndpointPicker(ct):
		return n.startPicker(c, ct)
	default:
		c.log.printf("image %s is not run by the conformance harness (no test of the suites needs it)", ct.Image)
		return nil
	}
}

// echoTLSConfig is echo-basic's HTTPS setup from its environment: a
// certificate (TLS_SERVER_CERT, TLS_SERVER_PRIVKEY) and, with
// TLS_CLIENT_CACERTS, client certificates required and verified against
// those CAs. nil: no HTTPS.
func echoTLSConfig(env, mounts map[string]string) (*tls.Config, error) {
	crt, key := env["TLS_SERVER_CERT"], env["TLS_SERVER_PRIVKEY"]
	if crt == "" || key == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(hostPath(mounts, crt), hostPath(mounts, key))
	if err != nil {
		return nil, fmt.Errorf("echo TLS: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if ca := env["TLS_CLIENT_CACERTS"]; ca != "" {
		pem, err := os.ReadFile(hostPath(mounts, ca))
		if err != nil {
			return nil, fmt.Errorf("echo client CAs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("echo client CAs: no PEM certificate in %s", ca)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}

// startProxy runs bin/proxy with the Deployment's arguments, as the pod
// would: mounted paths point into the pod's directory, listeners bind the
// pod's IP, the admin port sits on it too.
func (n *node) startProxy(c *container, ct corev1.Container, envVars, mounts map[string]string) error {
	var args []string
	for _, a := range ct.Args {
		name, value, ok := strings.Cut(a, "=")
		switch {
		case ok && name == "--listen-address":
			a = name + "=" + c.ip
		case ok && name == "--health-address":
			_, port, _ := net.SplitHostPort(value)
			a = name + "=" + net.JoinHostPort(c.ip, port)
		case ok:
			a = name + "=" + hostPath(mounts, value)
		}
		args = append(args, a)
	}
	args = append(args, "--admin-address="+net.JoinHostPort(c.ip, "19000"), "--node-id="+c.pod.Name)
	var env []string
	for k, v := range envVars {
		env = append(env, k+"="+v)
	}
	p, err := harness.Launch(c.log, env, n.opts.ProxyBinary, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	go func() {
		c.log.printf("[harness] proxy exited: %v", p.Wait())
	}()
	return nil
}

// containerPort resolves a probe's port, a number or the name of one of
// ct's ports (0 when the name is unknown, as the kubelet would fail it).
func containerPort(ct corev1.Container, port intstr.IntOrString) int {
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, p := range ct.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort)
		}
	}
	return 0
}

// probe runs the readiness probes as the kubelet does: a TCP connect to
// the pod's port, an HTTP GET answered with 2xx or 3xx, a gRPC health
// check answered SERVING; every process must be running.
func (c *container) probe() bool {
	for _, p := range c.procs {
		if p.Exited() {
			return false
		}
	}
	for _, p := range c.probes {
		if !p.run(c.ip) {
			return false
		}
	}
	return true
}

func (p readinessProbe) run(ip string) bool {
	if p.port == 0 {
		return false // a named port the container does not have
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(p.port))
	switch {
	case p.grpc:
		return grpcServing(addr, p.grpcService)
	case p.path == "":
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + addr + p.path)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// stop ends the pod's containers and removes its volumes.
func (c *container) stop() {
	c.stopParts()
	_ = c.logFile.Close()
	_ = os.RemoveAll(c.dir)
}

// stopParts stops the echo servers, processes and port forwards.
func (c *container) stopParts() {
	for _, e := range c.echos {
		e.Close()
	}
	for _, f := range c.forwards {
		f.Close()
	}
	for _, p := range c.procs {
		p.Stop(5 * time.Second)
	}
	c.echos, c.forwards, c.procs = nil, nil, nil
}

// materializeVolumes writes the pod's Secret, ConfigMap and projected
// ServiceAccount token volumes under its directory, as a kubelet mounts
// them, and returns container mount path → host directory.
func (n *node) materializeVolumes(ctx context.Context, c *container) (map[string]string, error) {
	byName := map[string]string{}
	for _, v := range c.pod.Spec.Volumes {
		dir := filepath.Join(c.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		switch {
		case v.Secret != nil:
			s, err := n.cs.CoreV1().Secrets(c.pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			project(files, s.Data, v.Secret.Items)
		case v.ConfigMap != nil:
			cm, err := n.cs.CoreV1().ConfigMaps(c.pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			data := map[string][]byte{}
			for k, val := range cm.Data {
				data[k] = []byte(val)
			}
			project(files, data, v.ConfigMap.Items)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if t := src.ServiceAccountToken; t != nil {
					tok, err := n.token(ctx, c.pod, t)
					if err != nil {
						return nil, fmt.Errorf("volume %s: %w", v.Name, err)
					}
					files[t.Path] = []byte(tok)
				}
			}
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return nil, err
			}
		}
		byName[v.Name] = dir
	}
	mounts := map[string]string{}
	for _, ct := range c.pod.Spec.Containers {
		for _, m := range ct.VolumeMounts {
			if dir, ok := byName[m.Name]; ok {
				mounts[m.MountPath] = dir
			}
		}
	}
	return mounts, nil
}

// project copies data (all keys, or the listed items) into files.
func project(files, data map[string][]byte, items []corev1.KeyToPath) {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return
	}
	for _, it := range items {
		if v, ok := data[it.Key]; ok {
			files[it.Path] = v
		}
	}
}

// token requests the pod's ServiceAccount token for a projected volume.
func (n *node) token(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := n.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{p.Audience}, ExpirationSeconds: p.ExpirationSeconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}

// hostPath maps a path inside the container to the host file behind its
// mount; other values pass through.
func hostPath(mounts map[string]string, p string) string {
	best := ""
	for mp := range mounts {
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return p
	}
	return filepath.Join(mounts[best], strings.TrimPrefix(p, best))
}
