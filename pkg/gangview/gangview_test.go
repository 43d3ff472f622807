package gangview

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func workload(name string, groups ...schedulingv1alpha1.PodGroup) schedulingv1alpha1.Workload {
	return schedulingv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       schedulingv1alpha1.WorkloadSpec{PodGroups: groups},
	}
}

func gangGroup(name string, minCount int32) schedulingv1alpha1.PodGroup {
	return schedulingv1alpha1.PodGroup{Name: name, Policy: schedulingv1alpha1.PodGroupPolicy{
		Gang: &schedulingv1alpha1.GangSchedulingPolicy{MinCount: minCount}}}
}

func basicGroup(name string) schedulingv1alpha1.PodGroup {
	return schedulingv1alpha1.PodGroup{Name: name, Policy: schedulingv1alpha1.PodGroupPolicy{
		Basic: &schedulingv1alpha1.BasicSchedulingPolicy{}}}
}

// member is a pod of ns/w/group; node and phase say how far it came.
func member(name, group, node string, phase v1.PodPhase) v1.Pod {
	return v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)},
		Spec:       v1.PodSpec{NodeName: node, WorkloadRef: &v1.WorkloadReference{Name: "w", PodGroup: group}},
		Status:     v1.PodStatus{Phase: phase},
	}
}

func members(n int, group, node string, phase v1.PodPhase) []v1.Pod {
	var pods []v1.Pod
	for i := range n {
		pods = append(pods, member(group+string(rune('a'+i))+node, group, node, phase))
	}
	return pods
}

func event(pod, reason, note string, at time.Time) eventsv1.Event {
	return eventsv1.Event{
		Regarding: v1.ObjectReference{Kind: "Pod", Name: pod, UID: types.UID(pod)},
		Reason:    reason, Note: note, EventTime: metav1.NewMicroTime(at),
	}
}

func TestBuild(t *testing.T) {
	key := gang.Key{Namespace: "ns", Workload: "w", PodGroup: "g"}
	cases := []struct {
		name      string
		workloads []schedulingv1alpha1.Workload
		pods      []v1.Pod
		events    []eventsv1.Event
		want      Gang
	}{{
		name: "no Workload",
		pods: members(2, "g", "", v1.PodPending),
		want: Gang{Key: key, Present: 2, State: WaitingForWorkload},
	}, {
		name:      "the Workload lacks the podGroup",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("other", 2))},
		pods:      members(2, "g", "", v1.PodPending),
		want:      Gang{Key: key, Present: 2, State: WaitingForWorkload},
	}, {
		name:      "fewer members than minCount",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 4))},
		pods:      members(3, "g", "", v1.PodPending),
		want:      Gang{Key: key, IsGang: true, MinCount: 4, Present: 3, State: WaitingForMembers},
	}, {
		name:      "quorum, nothing bound: the latest event is the reason",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 2))},
		pods:      members(2, "g", "", v1.PodPending),
		events: []eventsv1.Event{
			event("gb", "FailedScheduling", "newer", t0.Add(time.Second)),
			event("ga", "WaitingForGangMembers", "older", t0),
		},
		want: Gang{Key: key, IsGang: true, MinCount: 2, Present: 2, State: Pending, Reason: "FailedScheduling: newer"},
	}, {
		name:      "a PodScheduled condition newer than the events wins",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 1))},
		pods: func() []v1.Pod {
			p := member("ga", "g", "", v1.PodPending)
			p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse,
				Reason: "Unschedulable", Message: "no room", LastTransitionTime: metav1.NewTime(t0.Add(time.Minute))}}
			return []v1.Pod{p}
		}(),
		events: []eventsv1.Event{event("ga", "FailedScheduling", "old", t0)},
		want:   Gang{Key: key, IsGang: true, MinCount: 1, Present: 1, State: Pending, Reason: "Unschedulable: no room"},
	}, {
		name:      "some bound, fewer than minCount: partial",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 4))},
		pods:      append(members(2, "g", "n1", v1.PodPending), members(2, "g", "", v1.PodPending)...),
		want:      Gang{Key: key, IsGang: true, MinCount: 4, Present: 4, Bound: 2, State: Binding},
	}, {
		name:      "placed and running",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 4))},
		pods:      append(members(2, "g", "n1", v1.PodRunning), members(2, "g", "n2", v1.PodSucceeded)...),
		want:      Gang{Key: key, IsGang: true, MinCount: 4, Present: 4, Bound: 4, Running: 2, Succeeded: 2, State: Running},
	}, {
		name:      "every member succeeded",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 2))},
		pods:      members(3, "g", "n1", v1.PodSucceeded),
		want:      Gang{Key: key, IsGang: true, MinCount: 2, Present: 3, Bound: 3, Succeeded: 3, State: Succeeded},
	}, {
		name:      "a member failed and none runs",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 2))},
		pods:      append(members(1, "g", "n1", v1.PodFailed), members(1, "g", "n2", v1.PodSucceeded)...),
		want:      Gang{Key: key, IsGang: true, MinCount: 2, Present: 2, Bound: 2, Succeeded: 1, Failed: 1, State: Failed},
	}, {
		name:      "basic podGroup: one bound of two is running, never partial",
		workloads: []schedulingv1alpha1.Workload{workload("w", basicGroup("g"))},
		pods:      append(members(1, "g", "n1", v1.PodRunning), members(1, "g", "", v1.PodPending)...),
		want:      Gang{Key: key, Present: 2, Bound: 1, Running: 1, State: Running},
	}, {
		name:      "pods being deleted and pods without a workloadRef are left out",
		workloads: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 1))},
		pods: func() []v1.Pod {
			gone := member("gone", "g", "n1", v1.PodRunning)
			gone.DeletionTimestamp = &metav1.Time{Time: t0}
			plain := member("plain", "g", "n1", v1.PodRunning)
			plain.Spec.WorkloadRef = nil
			return []v1.Pod{gone, plain, member("ga", "g", "", v1.PodPending)}
		}(),
		want: Gang{Key: key, IsGang: true, MinCount: 1, Present: 1, State: Pending},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := Build(Workloads{Native: tc.workloads}, tc.pods, tc.events)
			if len(rows) != 1 {
				t.Fatalf("got %d rows, want 1: %+v", len(rows), rows)
			}
			if rows[0] != tc.want {
				t.Errorf("got  %+v\nwant %+v", rows[0], tc.want)
			}
			if got, want := rows[0].Partial(), tc.want.State == Binding; got != want {
				t.Errorf("Partial() = %v, want %v", got, want)
			}
		})
	}
}

func TestBuildSeparatesReplicaKeysAndSorts(t *testing.T) {
	a, b := member("a", "g", "", v1.PodPending), member("b", "g", "", v1.PodPending)
	a.Spec.WorkloadRef.PodGroupReplicaKey, b.Spec.WorkloadRef.PodGroupReplicaKey = "1", "0"
	rows := Build(Workloads{Native: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 1))}}, []v1.Pod{a, b}, nil)
	if len(rows) != 2 || rows[0].Key.ReplicaKey != "0" || rows[1].Key.ReplicaKey != "1" {
		t.Fatalf("want gangs [0] and [1] in order, got %+v", rows)
	}
}

func TestWriteTable(t *testing.T) {
	rows := []Gang{
		{Key: gang.Key{Workload: "train", PodGroup: "workers"}, IsGang: true, MinCount: 4, Present: 4, Bound: 4, Running: 4, State: Running, Reason: "stale"},
		{Key: gang.Key{Workload: "sweep", PodGroup: "trials", ReplicaKey: "b"}, IsGang: true, MinCount: 2, Present: 1, State: WaitingForMembers, Reason: "WaitingForGangMembers: 1/2 present"},
		{Key: gang.Key{Workload: "lost", PodGroup: "g"}, Present: 1, State: WaitingForWorkload, Reason: "WorkloadNotFound: the Workload ns/lost does not exist"},
	}
	var out strings.Builder
	if err := WriteTable(&out, rows, TableOptions{MaxReason: 30}); err != nil {
		t.Fatal(err)
	}
	want := `WORKLOAD  PODGROUP  REPLICA  POLICY   PRESENT  BOUND  RUNNING  DONE  STATE               REASON
train     workers   -        gang(4)  4/4      4      4        0     Running             
sweep     trials    b        gang(2)  1/2      0      0        0     WaitingForMembers   WaitingForGangMembers: 1/2 pr…
lost      g         -        ?        1        0      0        0     WaitingForWorkload  WorkloadNotFound: the Workloa…
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestBuildPortable(t *testing.T) {
	portable := wcsv1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"},
		Spec: wcsv1alpha1.WorkloadSpec{PodGroups: []wcsv1alpha1.PodGroup{
			{Name: "g", Policy: wcsv1alpha1.PodGroupPolicy{Gang: &wcsv1alpha1.GangSchedulingPolicy{MinCount: 3}}}}},
	}
	annotated := member("p", "g", "", v1.PodPending)
	annotated.Spec.WorkloadRef = nil
	annotated.Annotations = map[string]string{gang.WorkloadAnnotation: "w", gang.PodGroupAnnotation: "g"}
	native := member("n", "g", "n1", v1.PodRunning)

	rows := Build(Workloads{Native: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 1))}, Portable: []wcsv1alpha1.Workload{portable}},
		[]v1.Pod{annotated, native}, nil)
	want := []Gang{
		{Key: gang.Key{Namespace: "ns", Workload: "w", PodGroup: "g"}, IsGang: true, MinCount: 1, Present: 1, Bound: 1, Running: 1, State: Running},
		{Key: gang.Key{Namespace: "ns", Workload: "w", PodGroup: "g", Source: gang.SourcePortable}, IsGang: true, MinCount: 3, Present: 1, State: WaitingForMembers},
	}
	if len(rows) != 2 || rows[0] != want[0] || rows[1] != want[1] {
		t.Errorf("got %+v\nwant %+v", rows, want)
	}
}

func TestBuildPodGroups(t *testing.T) {
	podGroup := func(name string, minMember int32) spv1alpha1.PodGroup {
		return spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: spv1alpha1.PodGroupSpec{MinMember: minMember}}
	}
	labelled := func(name, podGroup, node string, phase v1.PodPhase) v1.Pod {
		p := member(name, "", node, phase)
		p.Spec.WorkloadRef = nil
		p.Labels = map[string]string{gang.PodGroupLabel: podGroup}
		return p
	}
	rows := Build(Workloads{Native: []schedulingv1alpha1.Workload{workload("w", gangGroup("g", 1))},
		PodGroups: []spv1alpha1.PodGroup{podGroup("w", 2), podGroup("solo", 1)}},
		[]v1.Pod{labelled("a", "w", "n1", v1.PodRunning), labelled("b", "w", "", v1.PodPending),
			labelled("s", "solo", "n2", v1.PodRunning), labelled("x", "missing", "", v1.PodPending)}, nil)
	want := []Gang{
		{Key: gang.Key{Namespace: "ns", Workload: "missing", Source: gang.SourcePodGroup}, Present: 1, State: WaitingForWorkload},
		{Key: gang.Key{Namespace: "ns", Workload: "solo", Source: gang.SourcePodGroup}, Present: 1, Bound: 1, Running: 1, State: Running},
		{Key: gang.Key{Namespace: "ns", Workload: "w", Source: gang.SourcePodGroup}, IsGang: true, MinCount: 2, Present: 2, Bound: 1, Running: 1, State: Binding},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %+v\nwant %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: got %+v\nwant %+v", i, rows[i], want[i])
		}
	}
}
