// Package registry lists what this project adds to kube-scheduler, so that
// the binary and the tests build the scheduler the same way.
package registry

import (
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	// Teaches the scheduler's configuration loader our plugin args.
	_ "github.com/workload-coscheduling/workload-coscheduling/apis/config/scheme"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadcoscheduling"
)

// Options registers the out-of-tree plugins with kube-scheduler.
func Options() []app.Option {
	return []app.Option{
		app.WithPlugin(workloadcoscheduling.Name, workloadcoscheduling.New),
	}
}
