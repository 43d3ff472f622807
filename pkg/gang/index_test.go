package gang

import (
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var keyA = Key{Namespace: "ns", Workload: "job", PodGroup: "workers", ReplicaKey: "0"}

func pod(name, node string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)},
		Spec: v1.PodSpec{
			NodeName:    node,
			WorkloadRef: &v1.WorkloadReference{Name: "job", PodGroup: "workers", PodGroupReplicaKey: "0"},
		},
	}
}

// step is one event the index receives.
type step struct {
	observe   *v1.Pod
	reserve   *v1.Pod
	unreserve string
	delete    string
}

func TestIndexCounts(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  Counts
	}{
		{
			name:  "observed pods are present",
			steps: []step{{observe: pod("a", "")}, {observe: pod("b", "")}},
			want:  Counts{Present: 2},
		},
		{
			name:  "observing the same pod twice counts it once",
			steps: []step{{observe: pod("a", "")}, {observe: pod("a", "")}},
			want:  Counts{Present: 1},
		},
		{
			name:  "reserve then bind moves the member from reserved to bound",
			steps: []step{{observe: pod("a", "")}, {reserve: pod("a", "")}, {observe: pod("a", "n1")}},
			want:  Counts{Present: 1, Bound: 1},
		},
		{
			name:  "reserve before the informer saw the pod adds it",
			steps: []step{{reserve: pod("a", "")}, {observe: pod("a", "")}},
			want:  Counts{Present: 1, Reserved: 1},
		},
		{
			name:  "reserving twice counts once",
			steps: []step{{reserve: pod("a", "")}, {reserve: pod("a", "")}},
			want:  Counts{Present: 1, Reserved: 1},
		},
		{
			name:  "unreserve releases the reservation",
			steps: []step{{observe: pod("a", "")}, {reserve: pod("a", "")}, {unreserve: "a"}},
			want:  Counts{Present: 1},
		},
		{
			name:  "unreserve of a bound member keeps it bound",
			steps: []step{{reserve: pod("a", "")}, {observe: pod("a", "n1")}, {unreserve: "a"}},
			want:  Counts{Present: 1, Bound: 1},
		},
		{
			name:  "a pod seen already bound is bound",
			steps: []step{{observe: pod("a", "n1")}, {observe: pod("b", "")}},
			want:  Counts{Present: 2, Bound: 1},
		},
		{
			name:  "deleting a reserved member releases its reservation",
			steps: []step{{observe: pod("a", "")}, {observe: pod("b", "")}, {reserve: pod("a", "")}, {delete: "a"}},
			want:  Counts{Present: 1},
		},
		{
			name:  "deleting a bound member",
			steps: []step{{observe: pod("a", "n1")}, {observe: pod("b", "")}, {delete: "a"}},
			want:  Counts{Present: 1},
		},
		{
			name:  "deleting an unknown pod changes nothing",
			steps: []step{{observe: pod("a", "")}, {delete: "zz"}},
			want:  Counts{Present: 1},
		},
		{
			name:  "unreserve after delete is harmless",
			steps: []step{{reserve: pod("a", "")}, {observe: pod("b", "")}, {delete: "a"}, {unreserve: "a"}},
			want:  Counts{Present: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex()
			for _, s := range tc.steps {
				switch {
				case s.observe != nil:
					x.ObservePod(keyA, s.observe)
				case s.reserve != nil:
					x.Reserve(keyA, s.reserve, "n1")
				case s.unreserve != "":
					x.Unreserve(keyA, types.UID(s.unreserve))
				case s.delete != "":
					x.DeletePod(keyA, types.UID(s.delete))
				}
			}
			if got := x.Counts(keyA); got != tc.want {
				t.Fatalf("counts = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestIndexDropsEmptyGangs(t *testing.T) {
	x := NewIndex()
	other := keyA
	other.ReplicaKey = "1"
	x.ObservePod(keyA, pod("a", ""))
	x.Reserve(other, pod("b", ""), "n1")
	if x.Len() != 2 || len(x.GangsOf(keyA.WorkloadKey())) != 2 {
		t.Fatalf("want 2 gangs of one workload, got %d gangs, %v", x.Len(), x.GangsOf(keyA.WorkloadKey()))
	}
	x.DeletePod(keyA, "a")
	x.DeletePod(other, "b")
	if x.Len() != 0 || len(x.GangsOf(keyA.WorkloadKey())) != 0 || len(x.byWorkload) != 0 {
		t.Fatalf("index not empty after every member left: %d gangs, %d workloads", x.Len(), len(x.byWorkload))
	}
}

func TestIndexMembersByState(t *testing.T) {
	x := NewIndex()
	x.ObservePod(keyA, pod("pending", ""))
	x.Reserve(keyA, pod("reserved", ""), "n1")
	x.ObservePod(keyA, pod("bound", "n1"))

	pending := x.PendingPods(keyA)
	if len(pending) != 1 || pending["ns/pending"] == nil {
		t.Errorf("PendingPods = %v, want only ns/pending", pending)
	}
	reserved := x.ReservedPods(keyA)
	if len(reserved) != 1 || reserved[0] != "reserved" {
		t.Errorf("ReservedPods = %v, want [reserved]", reserved)
	}
	if x.PendingPods(Key{}) != nil || x.ReservedPods(Key{}) != nil {
		t.Errorf("an unknown gang has members")
	}
}

func TestIndexGangsOfSeparatesWorkloads(t *testing.T) {
	x := NewIndex()
	k2 := Key{Namespace: "ns", Workload: "other", PodGroup: "workers"}
	k3 := Key{Namespace: "ns2", Workload: "job", PodGroup: "workers"}
	x.ObservePod(keyA, pod("a", ""))
	x.ObservePod(k2, pod("b", ""))
	x.ObservePod(k3, pod("c", ""))
	got := x.GangsOf(WorkloadKey{Namespace: "ns", Name: "job"})
	sort.Slice(got, func(i, j int) bool { return got[i].String() < got[j].String() })
	if len(got) != 1 || got[0] != keyA {
		t.Fatalf("GangsOf(ns/job) = %v, want [%v]", got, keyA)
	}
}

func TestSetReasonReportsChangesOnly(t *testing.T) {
	x := NewIndex()
	x.ObservePod(keyA, pod("a", ""))
	steps := []struct {
		uid, reason string
		want        bool
	}{
		{"a", "1/2 members present", true},
		{"a", "1/2 members present", false},
		{"a", "2/2 members present", true},
		{"unknown", "whatever", true},
		{"unknown", "whatever", true},
	}
	for i, s := range steps {
		if got := x.SetReason(keyA, types.UID(s.uid), s.reason); got != s.want {
			t.Fatalf("step %d: SetReason(%s, %q) = %v, want %v", i, s.uid, s.reason, got, s.want)
		}
	}
}

func TestKeyOf(t *testing.T) {
	if _, ok := KeyOf(&v1.Pod{}); ok {
		t.Fatalf("a pod without workloadRef has a gang key")
	}
	k, ok := KeyOf(pod("a", ""))
	if !ok || k != keyA {
		t.Fatalf("KeyOf = %v, %v; want %v", k, ok, keyA)
	}
	if got, want := keyA.String(), "ns/job/workers[0]"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if got, want := (Key{Namespace: "ns", Workload: "job", PodGroup: "workers"}).String(), "ns/job/workers"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}

func TestRollbackMarksOnlyLiveReservations(t *testing.T) {
	x := NewIndex()
	x.Reserve(keyA, pod("a", ""), "n1")
	x.Reserve(keyA, pod("b", ""), "n1")
	x.ObservePod(keyA, pod("c", ""))  // pending
	x.ObservePod(keyA, pod("d", "n")) // bound

	first := x.StartRollback(keyA)
	sort.Slice(first, func(i, j int) bool { return first[i] < first[j] })
	if len(first) != 2 || first[0] != "a" || first[1] != "b" {
		t.Fatalf("first rollback rejects %v, want [a b]", first)
	}
	if again := x.StartRollback(keyA); len(again) != 0 {
		t.Fatalf("a second rollback of the same attempt rejects %v again", again)
	}
	// The rejected members' Unreserve belongs to the rollback.
	if was, byRollback := x.Unreserve(keyA, "a"); !was || !byRollback {
		t.Fatalf("Unreserve(a) = %v, %v; want true, true", was, byRollback)
	}
	// A member reserved in the next attempt fails on its own.
	x.Reserve(keyA, pod("a", ""), "n1")
	if was, byRollback := x.Unreserve(keyA, "a"); !was || byRollback {
		t.Fatalf("Unreserve(a) in a new attempt = %v, %v; want true, false", was, byRollback)
	}
	// Deleting a rejected member is no new failure; deleting a live one is.
	if _, held := x.DeletePod(keyA, "b"); held {
		t.Fatalf("deleting a member rejected by the rollback reports a live reservation")
	}
	x.Reserve(keyA, pod("c", ""), "n1")
	if _, held := x.DeletePod(keyA, "c"); !held {
		t.Fatalf("deleting a reserved member does not report its reservation")
	}
	if was, _ := x.Unreserve(keyA, "d"); was {
		t.Fatalf("Unreserve of a bound member reports a reservation")
	}
}

func TestClock(t *testing.T) {
	x := NewIndex()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := pod("a", "")
	p.CreationTimestamp = metav1.NewTime(created)
	if _, ok := x.QueuedAt(keyA); ok {
		t.Fatalf("an unknown gang has a queue time")
	}
	x.ObservePod(keyA, p)
	later := pod("b", "")
	later.CreationTimestamp = metav1.NewTime(created.Add(time.Minute))
	x.ObservePod(keyA, later)
	if at, ok := x.QueuedAt(keyA); !ok || at != created.UnixNano() {
		t.Fatalf("QueuedAt = %v, %v; want the first member's creation %v", at, ok, created.UnixNano())
	}

	now := created.Add(time.Hour)
	if left := x.BackoffLeft(keyA, now); left != 0 {
		t.Fatalf("backoff before any failure: %v", left)
	}
	x.Fail(keyA, now, 10*time.Second)
	if at, _ := x.QueuedAt(keyA); at != now.UnixNano() {
		t.Fatalf("QueuedAt after a failure = %v, want the failure time", at)
	}
	if left := x.BackoffLeft(keyA, now.Add(4*time.Second)); left != 6*time.Second {
		t.Fatalf("BackoffLeft 4s into a 10s backoff = %v", left)
	}
	if left := x.BackoffLeft(keyA, now.Add(11*time.Second)); left != 0 {
		t.Fatalf("BackoffLeft after the backoff = %v", left)
	}

	x.DeletePod(keyA, "a")
	x.DeletePod(keyA, "b")
	if _, ok := x.QueuedAt(keyA); ok {
		t.Fatalf("the clock of a dropped gang is still there")
	}
	x.Fail(keyA, now, time.Second) // a failure of a gang that left is a no-op
}

func TestHas(t *testing.T) {
	x := NewIndex()
	if x.Has(keyA, "a") {
		t.Fatalf("an empty index has a member")
	}
	x.ObservePod(keyA, pod("a", ""))
	if !x.Has(keyA, "a") || x.Has(keyA, "b") || x.Has(Key{}, "a") {
		t.Fatalf("Has does not match the members")
	}
}

func TestIndexAttemptLifecycle(t *testing.T) {
	x := NewIndex()
	created := time.Now().Add(-time.Minute)
	first := pod("a", "")
	first.CreationTimestamp = metav1.NewTime(created)
	x.ObservePod(keyA, first)
	x.ObservePod(keyA, pod("b", ""))

	if waited, ok := x.Admit(keyA, time.Now()); !ok || waited != 0 {
		t.Errorf("Admit before any reservation = %v, %v; want 0, true", waited, ok)
	}
	if _, ok := x.Admit(keyA, time.Now()); ok {
		t.Error("a second Admit in the same attempt reported first")
	}
	if !x.Admitted(keyA) {
		t.Error("Admitted = false after Admit")
	}

	// A failed attempt forgets the admission and reports how long the
	// attempt's members waited since the first reservation.
	x.Reserve(keyA, pod("a", ""), "n1")
	later := time.Now().Add(3 * time.Second)
	if waited := x.Fail(keyA, later, 0); waited < 2*time.Second || waited > 4*time.Second {
		t.Errorf("Fail reported a wait of %v, want about 3s", waited)
	}
	if x.Admitted(keyA) {
		t.Error("Admitted = true after Fail")
	}
	if waited := x.Fail(keyA, later, 0); waited != 0 {
		t.Errorf("Fail without a reservation since reported %v, want 0", waited)
	}

	// Complete counts from the first member's creation, once.
	if took, ok := x.Complete(keyA, created.Add(90*time.Second)); !ok || took != 90*time.Second {
		t.Errorf("Complete = %v, %v; want 1m30s, true", took, ok)
	}
	if _, ok := x.Complete(keyA, time.Now()); ok {
		t.Error("a second Complete reported first")
	}
	if _, ok := x.Complete(Key{Namespace: "other"}, time.Now()); ok {
		t.Error("Complete of an unknown gang reported first")
	}
}

func TestIndexGangReasonAndEach(t *testing.T) {
	x := NewIndex()
	x.ObservePod(keyA, pod("a", ""))
	keyB := Key{Namespace: "ns", Workload: "job", PodGroup: "workers", ReplicaKey: "1"}
	x.ObservePod(keyB, pod("b", ""))
	x.Fail(keyB, time.Now(), time.Minute)

	for i, tc := range []struct {
		reason string
		want   bool
	}{{"WaitingForGangMembers", true}, {"WaitingForGangMembers", false}, {"GangBackoff", true}, {"WaitingForGangMembers", true}} {
		if got := x.SetGangReason(keyA, tc.reason); got != tc.want {
			t.Errorf("step %d: SetGangReason(%s) = %v, want %v", i, tc.reason, got, tc.want)
		}
	}

	seen := map[Key]int64{}
	x.Each(func(key Key, counts Counts, backoffUntil int64) {
		if counts.Present != 1 {
			t.Errorf("%v: Present = %d, want 1", key, counts.Present)
		}
		seen[key] = backoffUntil
	})
	if len(seen) != 2 || seen[keyA] != 0 || seen[keyB] <= time.Now().UnixNano() {
		t.Errorf("Each saw %v; want both gangs, only %v backing off", seen, keyB)
	}
}

func TestIndexReservedOn(t *testing.T) {
	x := NewIndex()
	keyB := Key{Namespace: "ns", Workload: "job", PodGroup: "workers", ReplicaKey: "1"}
	x.Reserve(keyA, pod("a", ""), "n1")
	x.Reserve(keyA, pod("b", ""), "n2")
	x.Reserve(keyB, pod("c", ""), "n2")
	x.ObservePod(keyB, pod("d", "n3")) // bound, not reserved

	for _, tc := range []struct {
		node string
		want []Key
	}{{"n1", []Key{keyA}}, {"n2", []Key{keyA, keyB}}, {"n3", nil}, {"n4", nil}} {
		got := x.ReservedOn(tc.node)
		sort.Slice(got, func(i, j int) bool { return got[i].Compare(got[j]) < 0 })
		if len(got) != len(tc.want) || (len(got) > 0 && (got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1])) {
			t.Errorf("ReservedOn(%s) = %v, want %v", tc.node, got, tc.want)
		}
	}
	// A member a rollback already rejected is not reported again.
	x.StartRollback(keyA)
	if got := x.ReservedOn("n1"); len(got) != 0 {
		t.Errorf("ReservedOn(n1) after the rollback = %v, want none", got)
	}
}
