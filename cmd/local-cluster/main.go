// Command local-cluster starts and stops the local cluster of
// internal/localcluster: `local-cluster up` prints the kubeconfig to use,
// `local-cluster down` removes every process and file the cluster had.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/workload-coscheduling/workload-coscheduling/internal/localcluster"
)

func main() {
	root := flag.String("root", ".", "the repository, whose bin/ and charts/ are used")
	name := flag.String("name", localcluster.Defaults("").Name, "name of the cluster")
	nodes := flag.Int("nodes", 4, "simulated nodes to create")
	verbose := flag.Bool("v", false, "print kwokctl's output")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] up|down\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fail(err)
	}
	opts := localcluster.Defaults(abs)
	opts.Name, opts.Nodes = *name, *nodes
	if *verbose {
		opts.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch flag.Arg(0) {
	case "up":
		c, err := localcluster.Up(ctx, opts)
		if err != nil {
			fail(err)
		}
		fmt.Printf(`Local cluster %q is up: Kubernetes %s, %d simulated nodes, the default scheduler
and workload-coscheduling (schedulerName: %s).

    export KUBECONFIG=%s
    bin/k8s/kubectl get nodes
    bin/k8s/kubectl apply -f manifests/samples/

Scheduler log: %s
Stop it with: make local-down
`, c.Name, localcluster.KubeVersion, c.Nodes, localcluster.SchedulerName, c.Kubeconfig,
			c.SchedulerLog())
	case "down":
		if err := localcluster.Down(ctx, opts); err != nil {
			fail(err)
		}
		fmt.Printf("Local cluster %q is down.\n", opts.Name)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "local-cluster:", err)
	os.Exit(1)
}
