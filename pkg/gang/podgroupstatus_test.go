package gang

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
)

func TestPodGroupStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC))
	earlier := metav1.NewTime(now.Add(-time.Hour))
	phases := func(ps ...v1.PodPhase) []*v1.Pod {
		var pods []*v1.Pod
		for _, p := range ps {
			pods = append(pods, &v1.Pod{Status: v1.PodStatus{Phase: p}})
		}
		return pods
	}
	owned := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", OwnerReferences: []metav1.OwnerReference{
		{Kind: "Job", Name: "train"}, {Kind: "RayCluster", Name: "ray"}}}}
	deleting := &v1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: v1.PodStatus{Phase: v1.PodRunning}}
	P, R, S, F := v1.PodPending, v1.PodRunning, v1.PodSucceeded, v1.PodFailed
	for _, tc := range []struct {
		name   string
		old    spv1alpha1.PodGroupStatus
		pods   []*v1.Pod
		want   spv1alpha1.PodGroupStatus
		minMem int32
	}{
		{name: "no pods", minMem: 3, want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupPending}},
		{name: "too few pods", minMem: 3, pods: phases(P, P),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupPending}},
		{name: "enough pods, being placed", minMem: 3, pods: phases(P, P, P),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupScheduling, ScheduleStartTime: now}},
		{name: "a pod being deleted does not count", minMem: 3, pods: append(phases(P, P), deleting),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupPending}},
		{name: "running", minMem: 3, pods: phases(R, R, S, P), old: spv1alpha1.PodGroupStatus{ScheduleStartTime: earlier},
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupRunning, Running: 2, Succeeded: 1, ScheduleStartTime: earlier}},
		{name: "finished", minMem: 2, pods: phases(S, S, F),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupFinished, Succeeded: 2, Failed: 1, ScheduleStartTime: now}},
		{name: "failed", minMem: 3, pods: phases(R, R, F),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupFailed, Running: 2, Failed: 1, ScheduleStartTime: now}},
		{name: "finished stays finished when its pods go", minMem: 2,
			old:  spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupFinished, Succeeded: 2, ScheduleStartTime: earlier},
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupFinished, Succeeded: 2, ScheduleStartTime: earlier}},
		{name: "occupiedBy names the owners of the pods", minMem: 1, pods: append(phases(P), owned),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupScheduling, OccupiedBy: "ns/ray,ns/train", ScheduleStartTime: now}},
		{name: "minMember 0 is a gang of one", minMem: 0, pods: phases(R),
			want: spv1alpha1.PodGroupStatus{Phase: spv1alpha1.PodGroupRunning, Running: 1, ScheduleStartTime: now}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := &spv1alpha1.PodGroup{Spec: spv1alpha1.PodGroupSpec{MinMember: tc.minMem}, Status: tc.old}
			if got := PodGroupStatus(pg, tc.pods, now); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
