package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// Every feature runs in a namespace of its own, made in its setup.
type namespaceKey struct{}

func withNamespace(prefix string) features.Func {
	return func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		ns := envconf.RandomName(prefix, 16)
		c := clientset(t, cfg)
		if _, err := c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The API server admits pods once the namespace has its default
		// ServiceAccount.
		poll(ctx, t, 30*time.Second, "the default ServiceAccount of "+ns, func() (bool, error) {
			_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
		return context.WithValue(ctx, namespaceKey{}, ns)
	}
}

func deleteNamespace(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	if err := clientset(t, cfg).CoreV1().Namespaces().Delete(ctx, namespaceOf(ctx), metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	return ctx
}

func namespaceOf(ctx context.Context) string { return ctx.Value(namespaceKey{}).(string) }

func TestJobRunsAsOneGang(t *testing.T) {
	f := features.New("a Job of 4 pods runs as one gang").
		Setup(withNamespace("job-gang")).
		Assess("with 3 of its 4 members nothing binds; with the 4th, the Job completes", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			create(ctx, t, c, ns, gangWorkload("training", "workers", 4))
			// Parallelism 3 of a gang of 4: a scheduler without gangs would
			// start all three.
			threeThenFour(ctx, t, c, ns, gangJob("workers", "training", "workers", "", 4, "100m"))
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func TestReplicaKeysAreSeparateGangs(t *testing.T) {
	f := features.New("Jobs sharing a podGroup with different replica keys are separate gangs").
		Setup(withNamespace("replica-keys")).
		Assess("keys 0 and 1 each run as a gang of 2; key 2, with one pod, waits alone", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			create(ctx, t, c, ns, gangWorkload("sweep", "trials", 2))
			create(ctx, t, c, ns, gangJob("trial-0", "sweep", "trials", "0", 2, "100m"))
			create(ctx, t, c, ns, gangJob("trial-1", "sweep", "trials", "1", 2, "100m"))
			create(ctx, t, c, ns, gangJob("trial-2", "sweep", "trials", "2", 1, "100m"))
			waitJobComplete(ctx, t, c, ns, "trial-0", 2)
			waitJobComplete(ctx, t, c, ns, "trial-1", 2)
			for _, job := range []string{"trial-0", "trial-1"} {
				for _, p := range jobPods(ctx, t, c, ns, job) {
					if got, want := p.Spec.WorkloadRef.PodGroupReplicaKey, strings.TrimPrefix(job, "trial-"); got != want {
						t.Errorf("pod %s has replica key %q, want %q", p.Name, got, want)
					}
				}
			}
			// Were the keys one gang, trial-2's pod would have joined a quorum.
			neverBound(ctx, t, c, ns, "trial-2", 3*time.Second)
			waitEvent(ctx, t, c, ns, "trial-2", "WaitingForGangMembers")
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func TestJobBeforeItsWorkload(t *testing.T) {
	f := features.New("a Job created before its Workload").
		Setup(withNamespace("late-workload")).
		Assess("waits, saying the Workload is missing, then runs once it exists", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			create(ctx, t, c, ns, gangJob("early", "late", "workers", "", 3, "100m"))
			waitEvent(ctx, t, c, ns, "early", "WorkloadNotFound")
			neverBound(ctx, t, c, ns, "early", 2*time.Second)
			create(ctx, t, c, ns, gangWorkload("late", "workers", 3))
			waitJobComplete(ctx, t, c, ns, "early", 3)
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func TestGangThatCannotFit(t *testing.T) {
	f := features.New("a gang that cannot fit").
		Setup(withNamespace("no-fit")).
		Assess("binds none of its members while a later small Job runs", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			// One member per node fits, and the gang has one member more
			// than there are nodes: without gangs, all but one would start.
			nodes, perNode := schedulableNodes(ctx, t, c)
			cpu := resource.NewMilliQuantity(perNode*6/10, resource.DecimalSI).String()
			size := int32(nodes + 1)
			create(ctx, t, c, ns, gangWorkload("big", "ranks", size))
			create(ctx, t, c, ns, gangJob("big", "big", "ranks", "", size, cpu))
			waitEvent(ctx, t, c, ns, "big", "FailedScheduling")
			create(ctx, t, c, ns, gangWorkload("small", "workers", 2))
			create(ctx, t, c, ns, gangJob("small", "small", "workers", "", 2, "100m"))
			waitJobComplete(ctx, t, c, ns, "small", 2)
			neverBound(ctx, t, c, ns, "big", 3*time.Second)
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func TestPlainDeployment(t *testing.T) {
	f := features.New("a Deployment without a Workload").
		Setup(withNamespace("plain")).
		Assess("is scheduled pod by pod, as the default scheduler would", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			labels := map[string]string{"app": "web"}
			create(ctx, t, c, ns, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](3),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: v1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: v1.PodSpec{
							SchedulerName: schedulerName,
							Containers:    []v1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10", Resources: requests("50m")}},
						},
					},
				},
			})
			poll(ctx, t, 2*time.Minute, "3 available replicas of Deployment web", func() (bool, error) {
				d, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
				return err == nil && d.Status.AvailableReplicas == 3, nil
			})
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func clientset(t *testing.T, cfg *envconf.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func gangWorkload(name, podGroup string, minCount int32) *schedulingv1alpha1.Workload {
	return &schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{{
			Name:   podGroup,
			Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: minCount}},
		}}},
	}
}

// gangJob is a Job of n pods, each asking for cpu, all members of the gang
// workload/podGroup[replicaKey]. Its pods exit at once.
func gangJob(name, workload, podGroup, replicaKey string, n int32, cpu string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Parallelism:  ptr.To(n),
			Completions:  ptr.To(n),
			BackoffLimit: ptr.To[int32](0),
			Template: v1.PodTemplateSpec{Spec: v1.PodSpec{
				SchedulerName: schedulerName,
				WorkloadRef:   &v1.WorkloadReference{Name: workload, PodGroup: podGroup, PodGroupReplicaKey: replicaKey},
				RestartPolicy: v1.RestartPolicyNever,
				Containers: []v1.Container{{
					Name: "main", Image: "registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
					Command: []string{"sh", "-c", "sleep 1"}, Resources: requests(cpu),
				}},
			}},
		},
	}
}

func requests(cpu string) v1.ResourceRequirements {
	return v1.ResourceRequirements{Requests: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("16Mi"),
	}}
}

func create(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, obj any) {
	t.Helper()
	var err error
	switch o := obj.(type) {
	case *schedulingv1alpha1.Workload:
		_, err = c.SchedulingV1alpha1().Workloads(ns).Create(ctx, o, metav1.CreateOptions{})
	case *batchv1.Job:
		_, err = c.BatchV1().Jobs(ns).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
	default:
		t.Fatalf("create: %T", obj)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func poll(ctx context.Context, t *testing.T, timeout time.Duration, what string, done func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return done() })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func waitJobComplete(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	poll(ctx, t, 3*time.Minute, fmt.Sprintf("Job %s to complete %d pods", name, n), func() (bool, error) {
		job, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if job.Status.Failed > 0 {
			return false, fmt.Errorf("job %s has failed pods", name)
		}
		return job.Status.Succeeded == n, nil
	})
}

func jobPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, job string) []v1.Pod {
	t.Helper()
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// neverBound checks for a while that no pod of the Job gets a node.
func neverBound(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, job string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(250 * time.Millisecond) {
		pods := jobPods(ctx, t, c, ns, job)
		if len(pods) == 0 {
			t.Fatalf("Job %s has no pods", job)
		}
		for _, p := range pods {
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s of Job %s was bound to %s; its gang must wait whole", p.Name, job, p.Spec.NodeName)
			}
		}
		if time.Now().After(end) {
			return
		}
	}
}

// threeThenFour runs a Job of 4 members of a gang of 4 at parallelism 3 and
// checks none binds, then raises it to 4 and waits for the Job to complete.
func threeThenFour(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, job *batchv1.Job) {
	t.Helper()
	job.Spec.Parallelism = ptr.To[int32](3)
	create(ctx, t, c, ns, job)
	poll(ctx, t, 30*time.Second, "the Job's 3 pods", func() (bool, error) {
		return len(jobPods(ctx, t, c, ns, job.Name)) == 3, nil
	})
	neverBound(ctx, t, c, ns, job.Name, 3*time.Second)
	patch := []byte(`{"spec":{"parallelism":4}}`)
	if _, err := c.BatchV1().Jobs(ns).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJobComplete(ctx, t, c, ns, job.Name, 4)
}

// waitEvent waits for an event with the reason on some pod of the Job.
func waitEvent(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, job, reason string) {
	t.Helper()
	poll(ctx, t, time.Minute, fmt.Sprintf("a %s event on a pod of Job %s", reason, job), func() (bool, error) {
		events, err := c.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range events.Items {
			if e.Reason == reason && e.Regarding.Kind == "Pod" && strings.HasPrefix(e.Regarding.Name, job+"-") {
				return true, nil
			}
		}
		return false, nil
	})
}

// schedulableNodes counts the nodes pods can land on and returns the
// smallest allocatable CPU among them, in millicores.
func schedulableNodes(ctx context.Context, t *testing.T, c kubernetes.Interface) (int, int64) {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	count, smallest := 0, int64(0)
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || len(n.Spec.Taints) > 0 {
			continue
		}
		count++
		if cpu := n.Status.Allocatable.Cpu().MilliValue(); smallest == 0 || cpu < smallest {
			smallest = cpu
		}
	}
	if count == 0 {
		t.Fatal("no schedulable node")
	}
	return count, smallest
}
