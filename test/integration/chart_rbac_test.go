package integration

import (
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// TestChartRBACCoversKubeScheduler checks the chart's ClusterRole against
// the roles kube-scheduler 1.35 gets in a cluster (system:kube-scheduler and
// system:volume-scheduler, as the API server's bootstrap policy builds them
// for the same feature gates): with the defaults, and with every alpha gate
// that adds permissions turned on through the featureGates value. Leases are
// left out: the chart's Role grants the scheduler's own Lease.
func TestChartRBACCoversKubeScheduler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gates map[featuregate.Feature]bool
	}{
		{name: "default gates"},
		{name: "DRAExtendedResource, DRADeviceTaintRules, CoordinatedLeaderElection", gates: map[featuregate.Feature]bool{
			"DRAExtendedResource": true, "DRADeviceTaints": true, "DRADeviceTaintRules": true, "CoordinatedLeaderElection": true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := "featureGates:\n"
			for gate, on := range tc.gates {
				values += "  " + string(gate) + ": " + map[bool]string{true: "true", false: "false"}[on] + "\n"
			}
			if len(tc.gates) == 0 {
				values = "featureGates: {}\n"
			}
			// Not t.TempDir(): helm splits -f at commas, and the test's name has some.
			dir, err := os.MkdirTemp("", "chart-values")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			file := filepath.Join(dir, "values.yaml")
			if err := os.WriteFile(file, []byte(values), 0o600); err != nil {
				t.Fatal(err)
			}
			obj := find(decodeObjects(t, helmTemplate(t, "workload-coscheduling", "kube-system", file)), "ClusterRole")
			var ours rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &ours); err != nil {
				t.Fatal(err)
			}

			featuregatetesting.SetFeatureGatesDuringTest(t, utilfeature.DefaultFeatureGate, tc.gates)
			var needed []rbacv1.PolicyRule
			for _, role := range bootstrappolicy.ClusterRoles() {
				if role.Name != "system:kube-scheduler" && role.Name != "system:volume-scheduler" {
					continue
				}
				for _, rule := range role.Rules {
					// The bootstrap role grants leasecandidates whatever the
					// gates; kube-scheduler uses them only with
					// CoordinatedLeaderElection.
					if rule.Resources[0] == "leases" || (rule.Resources[0] == "leasecandidates" && !tc.gates["CoordinatedLeaderElection"]) {
						continue
					}
					needed = append(needed, rule)
				}
			}
			if len(needed) == 0 {
				t.Fatal("the bootstrap policy has no kube-scheduler roles")
			}
			if covers, missing := rbacvalidation.Covers(ours.Rules, needed); !covers {
				t.Fatalf("the chart's ClusterRole lacks what kube-scheduler needs: %+v", missing)
			}
		})
	}
}
