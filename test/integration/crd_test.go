package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
)

// TestPortableWorkloadCRD installs manifests/crds on an API server without
// the alpha Workload API and checks that the server itself holds portable
// Workloads to the built-in API's rules: each invalid one is refused with a
// message naming the field.
func TestPortableWorkloadCRD(t *testing.T) {
	c := startCluster(t)
	installCRDs(t, c)
	client := c.portableClient()
	ns := c.namespace(t)
	ctx := context.Background()

	gang := func(name string, minCount int32) wcsv1alpha1.PodGroup {
		return wcsv1alpha1.PodGroup{Name: name, Policy: wcsv1alpha1.PodGroupPolicy{Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: minCount}}}
	}
	basic := func(name string) wcsv1alpha1.PodGroup {
		return wcsv1alpha1.PodGroup{Name: name, Policy: wcsv1alpha1.PodGroupPolicy{Basic: &wcsv1alpha1.BasicSchedulingPolicy{}}}
	}
	workload := func(name string, groups ...wcsv1alpha1.PodGroup) *wcsv1alpha1.Workload {
		return &wcsv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: wcsv1alpha1.WorkloadSpec{PodGroups: groups}}
	}
	constrained := func(name string, required []string, preferred ...string) wcsv1alpha1.PodGroup {
		g := gang(name, 2)
		g.SchedulingConstraints = &wcsv1alpha1.PodGroupSchedulingConstraints{}
		for _, key := range required {
			g.SchedulingConstraints.Topology = append(g.SchedulingConstraints.Topology, wcsv1alpha1.TopologyConstraint{Key: key})
		}
		for _, key := range preferred {
			g.SchedulingConstraints.PreferredTopology = append(g.SchedulingConstraints.PreferredTopology, wcsv1alpha1.TopologyConstraint{Key: key})
		}
		return g
	}
	longName := strings.Repeat("n", 64)
	nine := make([]wcsv1alpha1.PodGroup, 9)
	for i := range nine {
		nine[i] = basic(string(rune('a' + i)))
	}
	for _, tc := range []struct {
		name    string
		obj     *wcsv1alpha1.Workload
		refused string // a part of the server's message; empty: accepted
	}{
		{"a gang and a basic group", workload("ok", gang("workers", 4), basic("driver")), ""},
		{"eight groups", workload("eight", nine[:8]...), ""},
		{"no group", workload("none"), "spec.podGroups: Required value"},
		{"an empty list of groups", workload("empty", []wcsv1alpha1.PodGroup{}...), "should have at least 1 items"},
		{"nine groups", workload("nine", nine...), "must have at most 8 items"},
		{"duplicate names", workload("dup", basic("a"), gang("a", 1)), "Duplicate value"},
		{"a name that is not a DNS label", workload("badname", basic("Workers_1")), "spec.podGroups[0].name"},
		{"both policies", workload("both", wcsv1alpha1.PodGroup{Name: "a", Policy: wcsv1alpha1.PodGroupPolicy{
			Basic: &wcsv1alpha1.BasicSchedulingPolicy{}, Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: 1}}}), "exactly one of `basic`, `gang` is required"},
		{"neither policy", workload("neither", wcsv1alpha1.PodGroup{Name: "a"}), "exactly one of `basic`, `gang` is required"},
		{"minCount 0", workload("zero", gang("a", 0)), "spec.podGroups[0].policy.gang.minCount: Invalid value: 0"},
		{"topology: a required and preferred keys", workload("topo", constrained("a", []string{"topology.kubernetes.io/zone"}, "example.com/rack", "block")), ""},
		{"topology: two required keys", workload("topo2", constrained("a", []string{"zone", "rack"})), "must have at most 1 item"},
		{"topology: four preferred keys", workload("topo4", constrained("a", nil, "a", "b", "c", "d")), "must have at most 3 items"},
		{"topology: a preferred key twice", workload("topodup", constrained("a", nil, "rack", "rack")), "keys must be unique"},
		{"topology: not a label key", workload("topobad", constrained("a", []string{"rack/"})), "spec.podGroups[0].schedulingConstraints.topology[0].key"},
		{"topology: a name part over 63", workload("topolong", constrained("a", []string{"example.com/" + longName})), "must be a label key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Workloads(ns).Create(ctx, tc.obj, metav1.CreateOptions{})
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatalf("accepted; want refused with %q", tc.refused)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Fatalf("refused with %q; want a message containing %q", err, tc.refused)
			}
		})
	}

	t.Run("podGroups cannot change; a controllerRef can be set once", func(t *testing.T) {
		w, err := client.Workloads(ns).Get(ctx, "ok", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		changed := w.DeepCopy()
		changed.Spec.PodGroups[0].Policy.Gang.MinCount = 2
		if _, err := client.Workloads(ns).Update(ctx, changed, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "podGroups: field is immutable") {
			t.Errorf("changing minCount: %v; want podGroups: field is immutable", err)
		}
		w.Spec.ControllerRef = &wcsv1alpha1.TypedLocalObjectReference{APIGroup: "batch", Kind: "Job", Name: "ok"}
		if w, err = client.Workloads(ns).Update(ctx, w, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("setting a controllerRef: %v", err)
		}
		w.Spec.ControllerRef.Name = "other"
		if _, err := client.Workloads(ns).Update(ctx, w, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "controllerRef: field is immutable") {
			t.Errorf("changing the controllerRef: %v; want controllerRef: field is immutable", err)
		}
	})
}

// installCRDs creates the CustomResourceDefinitions of manifests/crds and
// waits until the server serves them.
func installCRDs(t *testing.T, c *cluster) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "manifests", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in manifests/crds: %v", err)
	}
	client := apiextensionsclient.NewForConfigOrDie(c.restConfig).ApiextensionsV1().CustomResourceDefinitions()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if _, err := client.Create(context.Background(), &crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s never established: %v", crd.Name, err)
		}
	}
}
