package conformance

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/proto/freeport"
)

// isEndpointPicker reports a container of the Inference Extension suite's
// endpoint picker image (lwepp).
func isEndpointPicker(ct corev1.Container) bool {
	return strings.Contains(ct.Image, "/gateway-api-inference-extension/lwepp:")
}

// Ports lwepp listens on unless its flags say otherwise.
var pickerPortFlags = []struct {
	flag string
	def  int32
}{{"--grpc-port", 9002}, {"--grpc-health-port", 9003}, {"--metrics-port", 9090}}

// startPicker runs the suite's picker as the pod would: bin lwepp (built
// from the module proxy at the suite's version) with the container's
// arguments and the cluster's kubeconfig. lwepp listens on every
// interface, so two pods' pickers cannot both have port 9002: each gets
// free ports, and the pod's IP forwards its container ports to them.
func (n *node) startPicker(c *container, ct corev1.Container) error {
	if n.opts.PickerBinary == "" {
		c.log.printf("image %s is not run: no picker binary (the Gateway API suite does not use it)", ct.Image)
		return nil
	}
	var p *harness.Process
	var local map[int32]int
	// A port free when chosen can be taken before lwepp binds it (it binds
	// every interface); lwepp then exits at once, and a pod would restart.
	// Once, in .ci/run, the suite's test waited for a picker that had
	// exited so and timed out: a start that fails on a taken port is
	// retried with other ports.
	for attempt := 1; ; attempt++ {
		args, ports, err := pickerArgs(ct.Args)
		if err != nil {
			return err
		}
		args = append(args, "--kubeconfig", n.opts.Kubeconfig)
		p, err = harness.Launch(c.log, nil, n.opts.PickerBinary, args...)
		if err != nil {
			return err
		}
		local = ports
		if !pickerPortTaken(p, pickerStartup) || attempt == 3 {
			break
		}
		c.log.printf("[harness] picker could not bind its ports (attempt %d); starting it on others", attempt)
	}
	c.procs = append(c.procs, p)
	go func() { c.log.printf("[harness] picker exited: %v", p.Wait()) }()
	for podPort, lp := range local {
		f, err := harness.Forward(net.JoinHostPort(c.ip, strconv.Itoa(int(podPort))), net.JoinHostPort("127.0.0.1", strconv.Itoa(lp)))
		if err != nil {
			return err
		}
		c.forwards = append(c.forwards, f)
	}
	return nil
}

// pickerPortTaken reports whether the picker exited within its first
// seconds because a port was taken, as its output says. Whether its ports
// accept connections says nothing: a taken port does too, held by its
// taker. lwepp binds them about a second after it starts.
func pickerPortTaken(p *harness.Process, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !p.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Exited: its output is all in Logs (Launch).
	return strings.Contains(p.Logs(), "address already in use")
}

// pickerStartup is how long a started picker is watched for a port
// already in use.
const pickerStartup = 5 * time.Second

// pickerArgs replaces the picker's port flags (in "--flag value" or
// "--flag=value" form, or their defaults) with free local ports, and
// returns the new arguments and pod port → local port.
func pickerArgs(in []string) ([]string, map[int32]int, error) {
	local := map[int32]int{}
	var out []string
	seen := map[string]bool{}
	for i := 0; i < len(in); i++ {
		a := in[i]
		name, value, hasValue := strings.Cut(a, "=")
		isPort := false
		for _, pf := range pickerPortFlags {
			isPort = isPort || name == pf.flag
		}
		if !isPort {
			out = append(out, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(in) {
				return nil, nil, fmt.Errorf("picker flag %s without a value", name)
			}
			i++
			value = in[i]
		}
		port, err := strconv.Atoi(value)
		if err != nil {
			return nil, nil, fmt.Errorf("picker flag %s=%q: %w", name, value, err)
		}
		lp, err := freeLocalPort()
		if err != nil {
			return nil, nil, err
		}
		local[int32(port)] = lp
		seen[name] = true
		out = append(out, name, strconv.Itoa(lp))
	}
	for _, pf := range pickerPortFlags {
		if seen[pf.flag] {
			continue
		}
		lp, err := freeLocalPort()
		if err != nil {
			return nil, nil, err
		}
		local[pf.def] = lp
		out = append(out, pf.flag, strconv.Itoa(lp))
	}
	return out, local, nil
}

// freeLocalPort is a port free on every interface (the picker binds all).
func freeLocalPort() (int, error) {
	return freeport.On("")
}

// grpcServing runs a kubelet gRPC probe: grpc.health.v1 Check of service
// answered SERVING, in plain text as the kubelet speaks it.
func grpcServing(addr, service string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
