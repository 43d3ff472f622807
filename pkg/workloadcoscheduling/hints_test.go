package workloadcoscheduling

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"

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
	waiting := member("ns", "w-0", "job", "workers", "", "")
	freed := member("other", "x", "", "", "", "node-1")
	tests := []struct {
		name    string
		deleted *v1.Pod
		// backoff: the waiting pod's gang backs off after a failed attempt.
		backoff bool
		want    fwk.QueueingHint
	}{
		{name: "bound pod frees capacity", deleted: freed, want: fwk.Queue},
		{name: "unbound pod frees nothing", deleted: member("ns", "w-1", "job", "workers", "", ""), want: fwk.QueueSkip},
		{name: "a gang that backs off waits for its backoff's end", deleted: freed, backoff: true, want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			pl := newTestPlugin()
			key, _ := gang.KeyOf(waiting)
			pl.index.ObservePod(key, waiting, false, 1, nil, time.Now())
			if tc.backoff {
				pl.index.Fail(key, 0, gang.OutcomeUnfit, time.Now())
			}
			got, err := pl.isSchedulableAfterPodDeleted(logger, waiting, tc.deleted, nil)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
			if got, _ := pl.isSchedulableAfterNodeChange(logger, waiting, nil, nil); got != tc.want && tc.deleted == freed {
				t.Fatalf("node hint = %v; want %v", got, tc.want)
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
