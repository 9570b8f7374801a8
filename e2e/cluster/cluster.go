// Package cluster runs a real etcd + kube-apiserver (via controller-runtime's
// envtest) for tests, with the Gateway API and inference CRDs installed at
// the versions infergate supports. There is no kubelet, scheduler or
// controller-manager: Pods are created and their status is written by the
// test (see CreatePod), and namespaces never finish deleting — use a fresh
// namespace per test instead.
//
// Typical use:
//
//	c := cluster.StartT(t, cluster.Options{})          // all CRDs; skipped under -short
//	_ = c.CreateNamespace(ctx, "t1")
//	_, _ = c.CreatePod(ctx, "t1", "llm-0", map[string]string{"app": "llm"}, "127.0.0.2", true)
//	cmd.Env = append(os.Environ(), c.Env()...)          // KUBECONFIG for a binary under test
//
// Binaries come from KUBEBUILDER_ASSETS when set, else from package k8sbin
// (built once from the module proxy). Run tests with XDG_CACHE_HOME set to a
// repo-local directory: envtest records port reservations under
// os.UserCacheDir() from its package init.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/infergate/infergate/e2e/cluster/k8sbin"
)

// Options configures Start. The zero value starts a cluster with every CRD.
type Options struct {
	// CRDs to install at start. nil means AllCRDs; use NoCRDs to start
	// without any (install later with Cluster.InstallCRDs).
	CRDs []CRDSet
	// NoCRDs starts the cluster without CRDs, overriding CRDs.
	NoCRDs bool
	// GatewayExperimental installs gateway-api's experimental channel
	// instead of the standard one.
	GatewayExperimental bool
	// Output receives etcd and kube-apiserver logs (default: discarded).
	Output io.Writer
	// Logger for lifecycle lines (default: slog.Default()).
	Logger *slog.Logger
}

// Cluster is a running API server. Its clients talk to it as system:masters.
type Cluster struct {
	// Config is an admin REST config for in-process clients.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same admin
	// credentials, for binaries under test (--kubeconfig / KUBECONFIG).
	Kubeconfig string
	// Clientset and Dynamic are ready-made clients on Config.
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	// AssetsDir holds the etcd and kube-apiserver binaries in use.
	AssetsDir string
	// StartupTime is how long etcd + kube-apiserver + CRDs took to come up
	// (binary build time excluded).
	StartupTime time.Duration

	env    *envtest.Environment
	tmpDir string
	gwExp  bool
	logger *slog.Logger
}

// AssetsDir returns the directory with etcd and kube-apiserver: the
// KUBEBUILDER_ASSETS environment variable when set, else the cached build
// (building it on first use, which takes minutes).
func AssetsDir(ctx context.Context) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	return k8sbin.Ensure(ctx, k8sbin.Options{})
}

// Start starts etcd and kube-apiserver on 127.0.0.1 (random ports) and
// installs the requested CRDs, waiting until they are established. Call
// Stop when done.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	sets := opts.CRDs
	if sets == nil {
		sets = AllCRDs
	}
	if opts.NoCRDs {
		sets = nil
	}
	assets, err := AssetsDir(ctx)
	if err != nil {
		return nil, err
	}
	crds, err := LoadCRDs(ctx, opts.GatewayExperimental, sets...)
	if err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp("", "infergate-cluster-")
	if err != nil {
		return nil, err
	}

	start := time.Now()
	useExisting := false
	env := &envtest.Environment{
		// Never fall back to a cluster from the user's kubeconfig.
		UseExistingCluster:    &useExisting,
		BinaryAssetsDirectory: assets,
		CRDInstallOptions:     envtest.CRDInstallOptions{CRDs: crds},
	}
	// Explicit paths: envtest would otherwise prefer TEST_ASSET_* and
	// KUBEBUILDER_ASSETS from the environment over BinaryAssetsDirectory.
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, k8sbin.APIServerBinary)
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, k8sbin.EtcdBinary)}
	if opts.Output != nil {
		api.Out, api.Err = opts.Output, opts.Output
		env.ControlPlane.Etcd.Out, env.ControlPlane.Etcd.Err = opts.Output, opts.Output
	}
	// envtest logs through controller-runtime's global logger, which
	// prints a stack trace on first use when nobody set one; its few
	// lines say nothing opts.Output does not.
	ctrllog.SetLogger(logr.Discard())
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		_ = os.RemoveAll(tmpDir)
		return nil, fmt.Errorf("cluster: start envtest: %w", err)
	}
	c := &Cluster{
		Config:    cfg,
		AssetsDir: assets,
		env:       env,
		tmpDir:    tmpDir,
		gwExp:     opts.GatewayExperimental,
		logger:    logger,
	}
	if err := c.finishSetup(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.StartupTime = time.Since(start)
	logger.Info("test cluster started", "apiserver", cfg.Host, "kubeconfig", c.Kubeconfig,
		"crds", len(crds), "took", c.StartupTime.Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) finishSetup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.tmpDir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("cluster: write kubeconfig: %w", err)
	}
	var err error
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return err
	}
	return nil
}

// StartT starts a cluster for a test, stopping it in t.Cleanup. It skips
// the test under -short (starting an API server is not a unit test) and
// fails it if the cluster cannot start.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster: skipping real kube-apiserver test in -short mode")
	}
	if os.Getenv("XDG_CACHE_HOME") == "" {
		// envtest's port allocator keeps reservation files in
		// os.UserCacheDir(), chosen at package init — too early for us.
		t.Logf("cluster: XDG_CACHE_HOME is unset, envtest writes port reservations under $HOME/.cache (make test sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // covers a cold binary build
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("cluster: stop: %v", err)
		}
	})
	return c
}

// InstallCRDs installs more CRD sets into the running cluster and waits
// until they are served.
func (c *Cluster) InstallCRDs(ctx context.Context, sets ...CRDSet) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crds, err := LoadCRDs(ctx, c.gwExp, sets...)
	if err != nil {
		return nil, err
	}
	return envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{CRDs: crds})
}

// Env returns environment entries for a binary under test: KUBECONFIG, and
// client-go/kubectl cache directories inside the cluster's temp dir so
// nothing is written under $HOME.
func (c *Cluster) Env() []string {
	return []string{
		"KUBECONFIG=" + c.Kubeconfig,
		"KUBECACHEDIR=" + filepath.Join(c.tmpDir, "kubecache"),
		"XDG_CACHE_HOME=" + filepath.Join(c.tmpDir, "xdg-cache"),
	}
}

// Stop stops kube-apiserver and etcd and removes their data and the
// kubeconfig. It is safe to call more than once.
func (c *Cluster) Stop() error {
	if c.env == nil {
		return nil
	}
	err := c.env.Stop()
	c.env = nil
	return errors.Join(err, os.RemoveAll(c.tmpDir))
}
