// Command k8sbin builds (once) and caches etcd and kube-apiserver for the
// e2e tests, then prints the assets directory for KUBEBUILDER_ASSETS:
//
//	export KUBEBUILDER_ASSETS="$(go run ./e2e/cluster/cmd/k8sbin)"
//
// With -tool lwepp or -tool epp it builds (once) that Inference Extension
// picker instead and prints the binary's path.
//
// Progress goes to stderr so stdout stays just the directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/infergate/infergate/e2e/cluster/k8sbin"
)

func main() {
	var opts k8sbin.Options
	flag.StringVar(&opts.CacheDir, "cache", "", "cache root (default $INFERGATE_CACHE or <repo>/.cache)")
	flag.StringVar(&opts.KubeVersion, "kube-version", k8sbin.DefaultKubeVersion, "kube-apiserver version (X.Y.Z)")
	flag.StringVar(&opts.EtcdVersion, "etcd-version", k8sbin.DefaultEtcdVersion, "etcd version (X.Y.Z)")
	tool := flag.String("tool", "", "build and print this tool instead: lwepp or epp")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		dir string
		err error
	)
	switch *tool {
	case "":
		dir, err = k8sbin.Ensure(ctx, opts)
	case k8sbin.LWEPP.Name:
		dir, err = k8sbin.EnsureTool(ctx, opts, k8sbin.LWEPP)
	case k8sbin.EPP.Name:
		dir, err = k8sbin.EnsureTool(ctx, opts, k8sbin.EPP)
	default:
		err = fmt.Errorf("-tool %q: want lwepp or epp", *tool)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
