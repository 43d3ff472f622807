package workloadcoscheduling

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"

	"k8s.io/utils/ptr"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

func member(ns, name, workload, group, replica, node string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.PodSpec{NodeName: node}}
	if workload != "" {
		p.Spec.WorkloadRef = &v1.WorkloadReference{Name: workload, PodGroup: group, PodGroupReplicaKey: replica}
	}
	return p
}

func TestIsSchedulableAfterPodAdded(t *testing.T) {
	waiting := member("ns", "w-0", "job", "workers", "0", "")
	tests := []struct {
		name  string
		pod   *v1.Pod
		added *v1.Pod
		want  fwk.QueueingHint
	}{
		{name: "member of the same gang", pod: waiting, added: member("ns", "w-1", "job", "workers", "0", ""), want: fwk.Queue},
		{name: "other replica key", pod: waiting, added: member("ns", "w-1", "job", "workers", "1", ""), want: fwk.QueueSkip},
		{name: "other podGroup", pod: waiting, added: member("ns", "w-1", "job", "ps", "0", ""), want: fwk.QueueSkip},
		{name: "other workload", pod: waiting, added: member("ns", "w-1", "job2", "workers", "0", ""), want: fwk.QueueSkip},
		{name: "same names in another namespace", pod: waiting, added: member("ns2", "w-1", "job", "workers", "0", ""), want: fwk.QueueSkip},
		{name: "pod without workloadRef", pod: waiting, added: member("ns", "plain", "", "", "", ""), want: fwk.QueueSkip},
		{name: "terminating member", pod: waiting, added: terminatingMember("ns", "w-1", "job", "workers", "0"), want: fwk.QueueSkip},
		{name: "waiting pod without workloadRef", pod: member("ns", "plain", "", "", "", ""), added: waiting, want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			got, err := newTestPlugin().isSchedulableAfterPodAdded(logger, tc.pod, nil, tc.added)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestIsSchedulableAfterPodDeleted(t *testing.T) {
	low := member("ns", "low-0", "low", "workers", "", "")
	high := member("ns", "high-0", "high", "workers", "", "")
	high.Spec.Priority = ptr.To[int32](100)
	freed := member("other", "x", "", "", "", "node-1")
	tests := []struct {
		name    string
		target  *v1.Pod
		deleted *v1.Pod
		// backoff: the gangs back off after a failed attempt.
		backoff bool
		want    fwk.QueueingHint
	}{
		{name: "bound pod frees capacity", target: low, deleted: freed, want: fwk.Queue},
		{name: "unbound pod frees nothing", target: low, deleted: member("ns", "w-1", "job", "workers", "", ""), want: fwk.QueueSkip},
		{name: "the highest-priority gang that backs off is woken through its backoff", target: high, deleted: freed, backoff: true, want: fwk.Queue},
		{name: "a lower-priority gang that backs off waits", target: low, deleted: freed, backoff: true, want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			pl := newTestPlugin()
			now := time.Now()
			for _, p := range []*v1.Pod{low, high} {
				key, _ := gang.KeyOf(p)
				pl.index.ObservePod(key, p, false, 1, nil, now)
				if tc.backoff {
					pl.index.Fail(key, 0, gang.OutcomeUnfit, now)
				}
			}
			got, err := pl.isSchedulableAfterPodDeleted(logger, tc.target, tc.deleted, nil)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
			if tc.deleted != freed {
				return
			}
			key, _ := gang.KeyOf(tc.target)
			if tc.backoff && tc.want == fwk.Queue && pl.index.BackoffLeft(key, now) != 0 {
				t.Fatalf("the woken gang still backs off")
			}
			if tc.backoff && tc.want == fwk.QueueSkip && pl.index.BackoffLeft(key, now) == 0 {
				t.Fatalf("the waiting gang's backoff was lifted")
			}
		})
	}
}

// newTestPlugin is a plugin with an empty index and resolver, for the pure
// logic; the flow tests build one through the framework.
func newTestPlugin() *WorkloadCoscheduling {
	return &WorkloadCoscheduling{
		index:         gang.NewIndex(gang.Config{Backoff: 10 * time.Second}),
		resolver:      workloadref.New(true, nil),
		permitTimeout: time.Minute,
		now:           time.Now,
	}
}

func terminatingMember(ns, name, workload, group, replica string) *v1.Pod {
	p := member(ns, name, workload, group, replica, "")
	p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	return p
}

func TestIsSchedulableAfterWorkloadAdded(t *testing.T) {
	waiting := member("ns", "w-0", "job", "workers", "", "")
	workload := func(ns, name string) *schedulingv1alpha1.Workload {
		return &schedulingv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	tests := []struct {
		name  string
		pod   *v1.Pod
		added *schedulingv1alpha1.Workload
		want  fwk.QueueingHint
	}{
		{name: "the pod's Workload", pod: waiting, added: workload("ns", "job"), want: fwk.Queue},
		{name: "another Workload", pod: waiting, added: workload("ns", "job2"), want: fwk.QueueSkip},
		{name: "same name in another namespace", pod: waiting, added: workload("ns2", "job"), want: fwk.QueueSkip},
		{name: "pod without workloadRef", pod: member("ns", "plain", "", "", "", ""), added: workload("ns", "job"), want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			got, err := isSchedulableAfterWorkloadAdded(logger, tc.pod, nil, tc.added)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// A new member requeues its waiting siblings only when it completes their
// quorum.
func TestPodAddedRequeuesOnlyAtQuorum(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	pl := newTestPlugin()
	pl.resolver.SetWorkload(&schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job"},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{
			{Name: "workers", Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 3}}}}},
	})
	waiting := member("ns", "w-0", "job", "workers", "", "")
	waiting.UID = "w-0"
	key, _ := gang.KeyOf(waiting)
	pl.index.ObservePod(key, waiting, false, 3, nil, time.Now())
	second := member("ns", "w-1", "job", "workers", "", "")
	second.UID = "w-1"
	if got, _ := pl.isSchedulableAfterPodAdded(logger, waiting, nil, second); got != fwk.QueueSkip {
		t.Fatalf("the second of three members requeued the first: %v", got)
	}
	pl.index.ObservePod(key, second, false, 3, nil, time.Now())
	third := member("ns", "w-2", "job", "workers", "", "")
	third.UID = "w-2"
	if got, _ := pl.isSchedulableAfterPodAdded(logger, waiting, nil, third); got != fwk.Queue {
		t.Fatalf("the third of three members did not requeue the first: %v", got)
	}
}
