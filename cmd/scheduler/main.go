// Command kube-scheduler is kube-scheduler v1.35 with the WorkloadCoscheduling
// plugin registered. It takes every kube-scheduler flag; run it with
// --config=manifests/scheduler-config.yaml (or a copy of it).
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/registry"
)

func main() {
	if err := registry.ApplyFeatureGateDefaults(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	command := app.NewSchedulerCommand(registry.Options()...)
	os.Exit(cli.Run(command))
}
