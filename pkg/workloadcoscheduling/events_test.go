package workloadcoscheduling

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
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
		{name: "waiting pod without workloadRef", pod: member("ns", "plain", "", "", "", ""), added: waiting, want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			got, err := isSchedulableAfterPodAdded(logger, tc.pod, nil, tc.added)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestIsSchedulableAfterPodDeleted(t *testing.T) {
	waiting := member("ns", "w-0", "job", "workers", "", "")
	tests := []struct {
		name    string
		deleted *v1.Pod
		want    fwk.QueueingHint
	}{
		{name: "bound pod frees capacity", deleted: member("other", "x", "", "", "", "node-1"), want: fwk.Queue},
		{name: "unbound pod frees nothing", deleted: member("ns", "w-1", "job", "workers", "", ""), want: fwk.QueueSkip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			got, err := isSchedulableAfterPodDeleted(logger, waiting, tc.deleted, nil)
			if err != nil || got != tc.want {
				t.Fatalf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
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
