package workloadcoscheduling

import (
	"fmt"
	"maps"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

func TestWaitingGangs(t *testing.T) {
	now := time.Now()
	pl := newTestPlugin()
	pl.index = gang.NewIndex(gang.Config{Backoff: time.Minute})
	pl.resolver.SetWorkload(&schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "job"},
		Spec: schedulingv1alpha1.WorkloadSpec{PodGroups: []schedulingv1alpha1.PodGroup{
			{Name: "workers", Policy: schedulingv1alpha1.PodGroupPolicy{Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: 2}}},
			{Name: "web", Policy: schedulingv1alpha1.PodGroupPolicy{Basic: &schedulingv1alpha1.BasicSchedulingPolicy{}}},
		}},
	})
	// add puts a member of workload/group[replica] in the index, bound
	// to node when node is set, reserved when reserved is.
	n := 0
	add := func(workload, group, replica, node string, reserved bool) gang.Key {
		n++
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint(n), UID: types.UID(fmt.Sprint(n))},
			Spec:       v1.PodSpec{NodeName: node, WorkloadRef: &v1.WorkloadReference{Name: workload, PodGroup: group, PodGroupReplicaKey: replica}},
		}
		key, _ := gang.KeyOf(pod)
		pl.index.ObservePod(key, pod, false, 2, nil, now)
		if reserved {
			pl.index.Reserve(key, pod, "n1", 2, now)
		}
		return key
	}
	add("missing", "workers", "", "", false)      // waiting_for_workload
	add("job", "nogroup", "", "", false)          // waiting_for_workload
	add("job", "workers", "few", "", false)       // waiting_for_members
	add("job", "workers", "queued", "", false)    // queued
	add("job", "workers", "queued", "", false)    //
	add("job", "workers", "reserving", "", true)  // reserving
	add("job", "workers", "reserving", "", false) //
	add("job", "workers", "backoff", "", false)
	pl.index.Fail(add("job", "workers", "backoff", "", false), 0, gang.OutcomeUnfit, now) // backing_off
	add("job", "workers", "admitted", "n1", false)                                        // admitted: not waiting
	add("job", "workers", "admitted", "n2", false)                                        //
	add("job", "web", "", "", false)                                                      // basic: not a gang

	want := map[string]int{stateWaitingForWorkload: 2, stateWaitingForMembers: 1, stateQueued: 1, stateReserving: 1, stateBackingOff: 1}
	if got := pl.waitingGangs(now); !maps.Equal(got, want) {
		t.Errorf("waitingGangs = %v, want %v", got, want)
	}
}
