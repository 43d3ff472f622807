package registry

import (
	"testing"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/features"
)

// TestFeatureGateDefaults runs the scheduler's own flag handling after
// ApplyFeatureGateDefaults, as the binary does: the default holds without
// flags, and --feature-gates still overrides it.
func TestFeatureGateDefaults(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{name: "no flag: our default", want: false},
		{name: "the flag wins", args: []string{"--feature-gates=NominatedNodeNameForExpectation=true"}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			saved := utilfeature.DefaultFeatureGate.Enabled(features.NominatedNodeNameForExpectation)
			t.Cleanup(func() {
				_ = utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{string(features.NominatedNodeNameForExpectation): saved})
			})
			if err := ApplyFeatureGateDefaults(); err != nil {
				t.Fatal(err)
			}
			opts := options.NewOptions()
			fs := opts.Flags.FlagSet("feature gate")
			if fs == nil {
				t.Fatalf("no feature gate flag set in %v", opts.Flags.Order)
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
				t.Fatal(err)
			}
			if got := utilfeature.DefaultFeatureGate.Enabled(features.NominatedNodeNameForExpectation); got != tc.want {
				t.Fatalf("NominatedNodeNameForExpectation = %v, want %v", got, tc.want)
			}
		})
	}
}
