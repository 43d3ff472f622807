// Package scheme makes the kube-scheduler configuration scheme decode this
// project's plugin args. Import it for its side effect wherever a
// KubeSchedulerConfiguration that names them is loaded.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	"github.com/workload-coscheduling/workload-coscheduling/apis/config"
	configv1 "github.com/workload-coscheduling/workload-coscheduling/apis/config/v1"
)

// Scheme is the in-tree kube-scheduler configuration scheme, which the
// scheduler's config loader decodes with (strictly).
var Scheme = kubeschedulerscheme.Scheme

func init() {
	AddToScheme(Scheme)
}

// AddToScheme adds the internal and v1 args types to a scheme.
func AddToScheme(scheme *runtime.Scheme) {
	utilruntime.Must(config.AddToScheme(scheme))
	utilruntime.Must(configv1.AddToScheme(scheme))
}
