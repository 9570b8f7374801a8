package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/infergate/infergate/controlplane/leader"
	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/source/kube"
	"github.com/infergate/infergate/controlplane/status"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xds"
)

// kubeConfig holds the flags of Kubernetes mode (no --config-dir).
type kubeConfig struct {
	kubeconfig     string
	leaderElect    bool
	leaseNamespace string
	leaseName      string
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
}

func (k *kubeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to watch (Kubernetes mode; in-cluster config when neither this nor --config-dir is set)")
	fs.BoolVar(&k.leaderElect, "leader-elect", true, "Kubernetes mode: elect one replica (Lease) to write status; every replica serves xDS")
	fs.StringVar(&k.leaseNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's namespace, else infergate-system)")
	fs.StringVar(&k.leaseName, "leader-election-id", "infergate-controlplane", "name of the leader-election Lease")
	fs.DurationVar(&k.leaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a Lease is valid without renewal (failover time when a leader dies without releasing it)")
	fs.DurationVar(&k.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader retries renewing before giving up leadership")
	fs.DurationVar(&k.retryPeriod, "leader-election-retry-period", 2*time.Second, "interval between acquire/renew attempts (failover time after a clean shutdown)")
}

// kubeMode is the Kubernetes side of the control plane: the informer source,
// the status writer (leader only) and NACK events.
type kubeMode struct {
	cfg    kubeConfig
	log    *slog.Logger
	core   kubernetes.Interface
	dyn    dynamic.Interface
	writer *status.Writer
	events *status.NackEvents
	// inputs is the latest translation input, for authorizing proxies.
	inputs atomic.Pointer[translate.Inputs]
	// alsoLead is extra leader-only work (proxy provisioning), or nil.
	alsoLead func(ctx context.Context)
	// ports are the translated listener ports per Gateway, for the
	// provisioner (ListenerSet listeners need Service ports too).
	ports *provision.ListenerPorts
}

func newKubeMode(cfg kubeConfig, controllerName string, logger *slog.Logger) (*kubeMode, error) {
	var rc *rest.Config
	var err error
	if cfg.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	rc.UserAgent = "infergate-controlplane"
	// Status writes after a large change touch every route and pool; the
	// client-go default (5 QPS) would make that take minutes.
	rc.QPS, rc.Burst = 50, 100
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	if cfg.leaseNamespace == "" {
		cfg.leaseNamespace = podNamespace()
	}
	return &kubeMode{
		cfg:    cfg,
		log:    logger,
		core:   core,
		dyn:    dyn,
		writer: status.NewWriter(dyn, controllerName, logger.With("component", "status")),
		events: status.NewNackEvents(core, "infergate-controlplane"),
		ports:  provision.NewListenerPorts(),
	}, nil
}

// podNamespace is the namespace the control plane runs in, when in a pod.
func podNamespace() string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	return "infergate-system"
}

// xdsOptions turns NACKs into Events and makes the writer re-check the
// Gateways' rejection condition when a proxy NACKs or syncs.
func (k *kubeMode) xdsOptions() []xds.Option {
	return []xds.Option{
		xds.WithOnNack(func(gateway, nodeID, typeURL, reason string) {
			k.events.Nack(gateway, nodeID, typeURL, reason)
			k.writer.Kick()
		}),
		xds.WithOnSynced(func(string, string, string, time.Duration) { k.writer.Kick() }),
	}
}

// attach lets the status writer read the current rejections of the proxies
// connected to this replica.
func (k *kubeMode) attach(x *xds.Server) {
	k.writer.SetRejections(func() map[string][]status.Rejection {
		out := map[string][]status.Rejection{}
		for _, p := range x.Proxies() {
			for _, t := range p.Types {
				if t.Nacked != "" {
					out[p.Gateway] = append(out[p.Gateway], status.Rejection{Node: p.NodeID, TypeURL: t.TypeURL, Reason: t.NackReason})
				}
			}
		}
		return out
	})
}

// observe receives every translation: inputs and statuses go to the writer,
// which writes them only while this replica leads.
func (k *kubeMode) observe(in *translate.Inputs, out *translate.Output) {
	k.inputs.Store(in)
	k.ports.Update(out)
	k.events.Observe(in)
	k.writer.Submit(in, &out.Status)
}

// run watches the cluster, feeding apply, and writes status while leading.
func (k *kubeMode) run(ctx context.Context, debounce time.Duration, apply func(*translate.Inputs, *translate.Changes)) error {
	defer k.events.Shutdown()
	src := kube.New(k.core, k.dyn, kube.Options{Debounce: debounce, Logger: k.log.With("component", "source")})
	// A source that fails ends the process (and this replica's leadership).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := src.Run(ctx, apply)
		cancel()
		errc <- err
	}()

	lead := func(ctx context.Context) {
		if k.alsoLead != nil {
			go k.alsoLead(ctx)
		}
		k.writer.Run(ctx)
	}
	if !k.cfg.leaderElect {
		k.log.Info("leader election disabled; this replica writes status")
		lead(ctx)
		return <-errc
	}
	err := leader.Run(ctx, k.core, leader.Options{
		Namespace:     k.cfg.leaseNamespace,
		Name:          k.cfg.leaseName,
		LeaseDuration: k.cfg.leaseDuration,
		RenewDeadline: k.cfg.renewDeadline,
		RetryPeriod:   k.cfg.retryPeriod,
		Logger:        k.log.With("component", "leader"),
	}, lead)
	if err != nil {
		return err
	}
	return <-errc
}
