// Package registry lists what this project adds to or changes in
// kube-scheduler, so that the binary and the tests build the scheduler the
// same way.
package registry

import (
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/pkg/features"

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

// FeatureGateDefaults are the kube-scheduler feature gates whose 1.35 default
// this scheduler changes; --feature-gates still overrides them.
//
// NominatedNodeNameForExpectation (beta, on in 1.35) writes a
// nominatedNodeName to the API for every pod that waits at Permit: one more
// API call per gang member and attempt, and when a gang is rolled back the
// informer can bring a stale nomination back after it was cleared, so that
// other pods see the released nodes as taken until some unrelated event.
var FeatureGateDefaults = map[featuregate.Feature]bool{
	features.NominatedNodeNameForExpectation: false,
}

// ApplyFeatureGateDefaults sets FeatureGateDefaults on the process's feature
// gates; call it before the command line is parsed.
func ApplyFeatureGateDefaults() error {
	gates := make(map[string]bool, len(FeatureGateDefaults))
	for f, on := range FeatureGateDefaults {
		gates[string(f)] = on
	}
	return utilfeature.DefaultMutableFeatureGate.SetFromMap(gates)
}
