package workloadcoscheduling

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// cluster is a plugin whose index holds pods in gangs of four, one
// Workload per hundred gangs, as the informers would have filled it.
type benchCluster struct {
	pl   *WorkloadCoscheduling
	pods []*v1.Pod
}

func newBenchCluster(tb testing.TB, pods int) *benchCluster {
	tb.Helper()
	pl := newTestPlugin()
	c := &benchCluster{pl: pl}
	for i := 0; i < pods; i++ {
		g := i / 4
		workload := fmt.Sprintf("job-%d", g/100)
		if g%100 == 0 && i%4 == 0 {
			pl.resolver.SetWorkload(&schedulingv1alpha1.Workload{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: workload},
				Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{
					{Name: "workers", Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 4}}},
				}},
			})
		}
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i)),
				CreationTimestamp: metav1.NewTime(time.Unix(int64(i), 0))},
			Spec: v1.PodSpec{WorkloadRef: &v1.WorkloadReference{Name: workload, PodGroup: "workers", PodGroupReplicaKey: fmt.Sprint(g % 100)}},
		}
		key, _ := gang.KeyOf(pod)
		pl.index.ObservePod(key, pod, false, 4, nil, time.Now())
		c.pods = append(c.pods, pod)
	}
	// The first member of the middle gang holds a reservation and waits.
	mid := c.pods[pods/2/4*4]
	key, _ := gang.KeyOf(mid)
	pl.index.Reserve(key, mid, "n1", 4, time.Now())
	return c
}

func (c *benchCluster) waiting() *v1.Pod { return c.pods[len(c.pods)/2/4*4] }

func (c *benchCluster) queued(tb testing.TB, i int) *framework.QueuedPodInfo {
	pi, err := framework.NewPodInfo(c.pods[i])
	if err != nil {
		tb.Fatal(err)
	}
	return &framework.QueuedPodInfo{PodInfo: pi, Timestamp: c.pods[i].CreationTimestamp.Time}
}

var sizes = []int{1_000, 100_000}

// TestHotPathAllocatesNothing: Less, PreEnqueue (a member whose gang is
// complete) and Permit (a member that waits) allocate nothing, however many
// pods the cluster has.
func TestHotPathAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	for _, n := range sizes {
		c := newBenchCluster(t, n)
		a, b := c.queued(t, 1), c.queued(t, n-1)
		ready, waiting := c.pods[n-1], c.waiting()
		if s := c.pl.PreEnqueue(ctx, ready); !s.IsSuccess() {
			t.Fatalf("PreEnqueue of a complete gang's member: %v", s)
		}
		if s, _ := c.pl.Permit(ctx, nil, waiting, "node"); s.Code() != fwk.Wait {
			t.Fatalf("Permit of a waiting member: %v", s)
		}
		for name, f := range map[string]func(){
			"Less":       func() { c.pl.Less(a, b) },
			"PreEnqueue": func() { c.pl.PreEnqueue(ctx, ready) },
			"Permit":     func() { c.pl.Permit(ctx, nil, waiting, "node") },
		} {
			if allocs := testing.AllocsPerRun(200, f); allocs != 0 {
				t.Errorf("%s with %d pods allocates %v times per call", name, n, allocs)
			}
		}
	}
}

func BenchmarkHotPath(b *testing.B) {
	ctx := context.Background()
	for _, n := range sizes {
		c := newBenchCluster(b, n)
		a, q := c.queued(b, 1), c.queued(b, n-1)
		ready, waiting := c.pods[n-1], c.waiting()
		b.Run(fmt.Sprintf("Less/pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.pl.Less(a, q)
			}
		})
		b.Run(fmt.Sprintf("PreEnqueue/pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.pl.PreEnqueue(ctx, ready)
			}
		})
		b.Run(fmt.Sprintf("Permit/pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.pl.Permit(ctx, nil, waiting, "node")
			}
		})
		// A member pod updated, then deleted and added back: what the
		// informer handlers cost per event.
		now := time.Now()
		b.Run(fmt.Sprintf("IndexUpdate/pods=%d", n), func(b *testing.B) {
			pod := c.pods[n/3]
			key, _ := gang.KeyOf(pod)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.pl.index.ObservePod(key, pod, false, 4, nil, time.Now())
			}
		})
		b.Run(fmt.Sprintf("IndexDeleteAdd/pods=%d", n), func(b *testing.B) {
			pod := c.pods[n/3]
			key, _ := gang.KeyOf(pod)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.pl.index.DeletePod(key, pod.UID, 4, now)
				c.pl.index.ObservePod(key, pod, false, 4, nil, time.Now())
			}
		})
	}
}
