package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
	"sigs.k8s.io/yaml"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
)

// TestJobWithPodGroupLabel is a Job as a user of Coscheduling writes it: a
// scheduler-plugins PodGroup and pods labelled into it, no Workload. It runs
// as one gang, and the PodGroup's status follows it to Finished.
func TestJobWithPodGroupLabel(t *testing.T) {
	f := features.New("a Job whose pods carry the PodGroup label runs as one gang").
		Setup(withNamespace("podgroup-job")).
		Assess("with 3 of its 4 members nothing binds; with the 4th, the Job completes and its PodGroup is Finished", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			installPodGroupCRD(ctx, t, cfg)
			podGroups := podGroupClient(t, cfg)
			pg := &spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "training"}, Spec: spv1alpha1.PodGroupSpec{MinMember: 4}}
			// The CRD was just established: its API may take a moment to serve.
			poll(ctx, t, 30*time.Second, "the PodGroup created", func() (bool, error) {
				_, err := podGroups.SchedulerPluginsV1alpha1().PodGroups(ns).Create(ctx, pg, metav1.CreateOptions{})
				return err == nil, nil
			})
			job := gangJob("workers", "", "", "", 4, "100m")
			job.Spec.Template.Spec.WorkloadRef = nil
			job.Spec.Template.Labels = map[string]string{spv1alpha1.PodGroupLabel: "training"}
			threeThenFour(ctx, t, c, ns, job)
			poll(ctx, t, 30*time.Second, "the PodGroup's phase Finished", func() (bool, error) {
				got, err := podGroups.SchedulerPluginsV1alpha1().PodGroups(ns).Get(ctx, "training", metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				return got.Status.Phase == spv1alpha1.PodGroupFinished && got.Status.Succeeded == 4, nil
			})
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func podGroupClient(t *testing.T, cfg *envconf.Config) versioned.Interface {
	t.Helper()
	rc := rest.CopyConfig(cfg.Client().RESTConfig())
	rc.ContentType = runtime.ContentTypeJSON
	return versioned.NewForConfigOrDie(rc)
}

// installPodGroupCRD installs manifests/podgroup-crd unless the cluster has
// the CRD (the chart installed it, or an earlier test did), and waits until
// it is established.
func installPodGroupCRD(ctx context.Context, t *testing.T, cfg *envconf.Config) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "manifests", "podgroup-crd", "*.yaml"))
	if err != nil || len(files) != 1 {
		t.Fatalf("manifests/podgroup-crd: %v %v", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &crd.Object); err != nil {
		t.Fatal(err)
	}
	crds := dynamic.NewForConfigOrDie(cfg.Client().RESTConfig()).
		Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	poll(ctx, t, 30*time.Second, "the PodGroup CRD established", func() (bool, error) {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conditions {
			if m, ok := c.(map[string]interface{}); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}
