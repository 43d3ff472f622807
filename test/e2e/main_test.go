// Package e2e runs workload-coscheduling as users run it, on a whole cluster
// with a controller-manager (Jobs and Deployments make the pods), and checks
// the gang behaviours of the spec from the outside. One suite, two
// environments, chosen with -e2e.env:
//
//   - local (make e2e-local, part of make test): the local cluster of
//     internal/localcluster, with simulated nodes; nothing to download.
//   - kind (make e2e): a kind cluster from hack/kind-config.yaml, the image
//     loaded into it and the chart installed with helm. Needs Docker.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/envfuncs"
	"sigs.k8s.io/e2e-framework/third_party/helm"
	"sigs.k8s.io/e2e-framework/third_party/kind"

	"github.com/workload-coscheduling/workload-coscheduling/internal/localcluster"
)

var (
	environment = flag.String("e2e.env", "local", "where to run: local (simulated nodes, no Docker) or kind (needs Docker)")
	image       = flag.String("e2e.image", "workload-coscheduling/kube-scheduler:0.1.0", "kind: the scheduler image to install")
	archive     = flag.String("e2e.image-archive", "", "kind: the OCI archive of that image to load (make image-archive)")
	// kindNodeImage is the kindest/node image of Kubernetes 1.35 that kind
	// v0.31.0 (hack/tools/clusters) was released with.
	kindNodeImage = "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
)

// schedulerName is the profile pods of the suite ask for, as the chart
// installs it and the local cluster runs it.
const schedulerName = localcluster.SchedulerName

// repoRoot is the repository, from this package's directory.
var repoRoot, _ = filepath.Abs(filepath.Join("..", ".."))

var testenv env.Environment

func TestMain(m *testing.M) {
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testenv = env.NewWithConfig(cfg)
	switch *environment {
	case "local":
		setupLocal()
	case "kind":
		setupKind()
	default:
		fmt.Fprintf(os.Stderr, "-e2e.env=%q: want local or kind\n", *environment)
		os.Exit(2)
	}
	os.Exit(testenv.Run(m))
}

func setupLocal() {
	opts := localcluster.Defaults(repoRoot)
	opts.Name = "workload-coscheduling-e2e"
	opts.Log = os.Stderr
	testenv.Setup(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		c, err := localcluster.Up(ctx, opts)
		if err != nil {
			return ctx, err
		}
		cfg.WithKubeconfigFile(c.Kubeconfig)
		return ctx, nil
	}).Finish(func(ctx context.Context, _ *envconf.Config) (context.Context, error) {
		return ctx, localcluster.Down(ctx, opts)
	})
}

func setupKind() {
	if err := exec.Command("docker", "info").Run(); err != nil {
		fmt.Fprintln(os.Stderr, "-e2e.env=kind needs a running Docker engine, and none answers here (docker info failed). "+
			"Run make e2e-local for the same suite without Docker.")
		os.Exit(1)
	}
	if *archive == "" {
		fmt.Fprintln(os.Stderr, "-e2e.env=kind needs -e2e.image-archive: run make e2e, which builds it")
		os.Exit(1)
	}
	const cluster = "workload-coscheduling-e2e"
	repo, tag := *image, "latest"
	if i := strings.LastIndex(*image, ":"); i > strings.LastIndex(*image, "/") {
		repo, tag = (*image)[:i], (*image)[i+1:]
	}
	testenv.Setup(
		envfuncs.CreateClusterWithConfig(kind.NewProvider(), cluster, filepath.Join(repoRoot, "hack", "kind-config.yaml"),
			kind.WithImage(kindNodeImage), kind.WithPath(filepath.Join(repoRoot, "bin", "kind"))),
		envfuncs.LoadImageArchiveToCluster(cluster, *archive),
		func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
			manager := helm.New(cfg.KubeconfigFile()).WithPath(filepath.Join(repoRoot, "bin", "helm"))
			err := manager.RunInstall(helm.WithName("workload-coscheduling"), helm.WithNamespace("kube-system"),
				helm.WithChart(filepath.Join(repoRoot, "charts", "workload-coscheduling")),
				helm.WithArgs("--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never",
					"--set", "podGroups.installCRD=true"),
				helm.WithWait(), helm.WithTimeout("3m"))
			return ctx, err
		},
	).Finish(envfuncs.DestroyCluster(cluster))
}
