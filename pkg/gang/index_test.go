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

func TestIndexDropsEmptyGangs(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	other := keyA
	other.ReplicaKey = "1"
	x.ObservePod(keyA, pod("a", ""), false, 0, nil, time.Now())
	x.Reserve(other, pod("b", ""), "n1", 0, time.Now())
	if x.Len() != 2 || len(x.GangsOf(keyA.WorkloadKey())) != 2 {
		t.Fatalf("want 2 gangs of one workload, got %d gangs, %v", x.Len(), x.GangsOf(keyA.WorkloadKey()))
	}
	x.DeletePod(keyA, "a", 0, time.Now())
	x.DeletePod(other, "b", 0, time.Now())
	if x.Len() != 0 || len(x.GangsOf(keyA.WorkloadKey())) != 0 || len(x.byWorkload) != 0 {
		t.Fatalf("index not empty after every member left: %d gangs, %d workloads", x.Len(), len(x.byWorkload))
	}
}

func TestIndexMembersByState(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	x.ObservePod(keyA, pod("pending", ""), false, 0, nil, time.Now())
	x.Reserve(keyA, pod("reserved", ""), "n1", 0, time.Now())
	x.ObservePod(keyA, pod("bound", "n1"), false, 0, nil, time.Now())

	pending := x.PendingPods(keyA)
	if len(pending) != 1 || pending["ns/pending"] == nil {
		t.Errorf("PendingPods = %v, want only ns/pending", pending)
	}
	if c := x.Counts(keyA); c != (Counts{Present: 3, Reserved: 1, Bound: 1}) {
		t.Errorf("Counts = %+v, want 3 present, 1 reserved, 1 bound", c)
	}
	if x.PendingPods(Key{}) != nil {
		t.Errorf("an unknown gang has members")
	}
}

func TestIndexGangsOfSeparatesWorkloads(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	k2 := Key{Namespace: "ns", Workload: "other", PodGroup: "workers"}
	k3 := Key{Namespace: "ns2", Workload: "job", PodGroup: "workers"}
	x.ObservePod(keyA, pod("a", ""), false, 0, nil, time.Now())
	x.ObservePod(k2, pod("b", ""), false, 0, nil, time.Now())
	x.ObservePod(k3, pod("c", ""), false, 0, nil, time.Now())
	got := x.GangsOf(WorkloadKey{Namespace: "ns", Name: "job"})
	sort.Slice(got, func(i, j int) bool { return got[i].String() < got[j].String() })
	if len(got) != 1 || got[0] != keyA {
		t.Fatalf("GangsOf(ns/job) = %v, want [%v]", got, keyA)
	}
}

func TestSetReasonReportsChangesOnly(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	x.ObservePod(keyA, pod("a", ""), false, 0, nil, time.Now())
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

func TestClock(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := pod("a", "")
	p.CreationTimestamp = metav1.NewTime(created)
	if _, ok := x.QueuedAt(keyA); ok {
		t.Fatalf("an unknown gang has a queue time")
	}
	x.ObservePod(keyA, p, false, 0, nil, time.Now())
	later := pod("b", "")
	later.CreationTimestamp = metav1.NewTime(created.Add(time.Minute))
	x.ObservePod(keyA, later, false, 0, nil, time.Now())
	if at, ok := x.QueuedAt(keyA); !ok || at != created.UnixNano() {
		t.Fatalf("QueuedAt = %v, %v; want the first member's creation %v", at, ok, created.UnixNano())
	}

	now := created.Add(time.Hour)
	if left := x.BackoffLeft(keyA, now); left != 0 {
		t.Fatalf("backoff before any failure: %v", left)
	}
	x.Fail(keyA, x.Attempt(keyA), OutcomeUnfit, now)
	if at, _ := x.QueuedAt(keyA); at != now.UnixNano() {
		t.Fatalf("QueuedAt after a failure = %v, want the failure time", at)
	}
	if left := x.BackoffLeft(keyA, now.Add(4*time.Second)); left != 6*time.Second {
		t.Fatalf("BackoffLeft 4s into a 10s backoff = %v", left)
	}
	if left := x.BackoffLeft(keyA, now.Add(11*time.Second)); left != 0 {
		t.Fatalf("BackoffLeft after the backoff = %v", left)
	}

	x.DeletePod(keyA, "a", 0, time.Now())
	x.DeletePod(keyA, "b", 0, time.Now())
	if _, ok := x.QueuedAt(keyA); ok {
		t.Fatalf("the clock of a dropped gang is still there")
	}
	if e := x.Fail(keyA, 0, OutcomeUnfit, now); e.RolledBack { // a failure of a gang that left is a no-op
		t.Fatalf("a gang that left was rolled back")
	}
}

func TestHas(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	if x.Has(keyA, "a") {
		t.Fatalf("an empty index has a member")
	}
	x.ObservePod(keyA, pod("a", ""), false, 0, nil, time.Now())
	if !x.Has(keyA, "a") || x.Has(keyA, "b") || x.Has(Key{}, "a") {
		t.Fatalf("Has does not match the members")
	}
}

func TestIndexGangReasonAndEach(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	x.ObservePod(keyA, pod("a", ""), false, 0, nil, time.Now())
	keyB := Key{Namespace: "ns", Workload: "job", PodGroup: "workers", ReplicaKey: "1"}
	x.ObservePod(keyB, pod("b", ""), false, 0, nil, time.Now())
	x.Fail(keyB, 0, OutcomeUnfit, time.Now())

	for i, tc := range []struct {
		reason string
		want   bool
	}{{"WaitingForGangMembers", true}, {"WaitingForGangMembers", false}, {"GangBackoff", true}, {"WaitingForGangMembers", true}} {
		if got := x.SetGangReason(keyA, tc.reason); got != tc.want {
			t.Errorf("step %d: SetGangReason(%s) = %v, want %v", i, tc.reason, got, tc.want)
		}
	}

	seen := map[Key]Phase{}
	x.Each(time.Now(), func(s Summary) {
		if s.Counts.Present != 1 {
			t.Errorf("%v: Present = %d, want 1", s.Key, s.Counts.Present)
		}
		seen[s.Key] = s.Phase
	})
	if len(seen) != 2 || seen[keyA] != PhaseQueued || seen[keyB] != PhaseBackingOff {
		t.Errorf("Each saw %v; want both gangs, only %v backing off", seen, keyB)
	}
}

func TestIndexReservedOn(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	keyB := Key{Namespace: "ns", Workload: "job", PodGroup: "workers", ReplicaKey: "1"}
	x.Reserve(keyA, pod("a", ""), "n1", 0, time.Now())
	x.Reserve(keyA, pod("b", ""), "n2", 0, time.Now())
	x.Reserve(keyB, pod("c", ""), "n2", 0, time.Now())
	x.ObservePod(keyB, pod("d", "n3"), false, 0, nil, time.Now()) // bound, not reserved

	for _, tc := range []struct {
		node string
		want []Key
	}{{"n1", []Key{keyA}}, {"n2", []Key{keyA, keyB}}, {"n3", nil}, {"n4", nil}} {
		var got []Key
		for _, r := range x.ReservedOn(tc.node) {
			got = append(got, r.Key)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Compare(got[j]) < 0 })
		if len(got) != len(tc.want) || (len(got) > 0 && (got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1])) {
			t.Errorf("ReservedOn(%s) = %v, want %v", tc.node, got, tc.want)
		}
	}
	// A member a rollback already rejected is not reported again.
	x.Fail(keyA, x.Attempt(keyA), OutcomeUnfit, time.Now())
	if got := x.ReservedOn("n1"); len(got) != 0 {
		t.Errorf("ReservedOn(n1) after the rollback = %v, want none", got)
	}
}

// A gang that preempts waits for its victims from before the first is
// evicted; each deletion, or a failed eviction given up, counts once, and the
// last wakes the gang.
func TestPreemptedWaitsForVictims(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	now := time.Now()
	x.ObservePod(keyA, pod("a", ""), false, 2, nil, now)
	x.ObservePod(keyA, pod("b", ""), false, 2, nil, now)
	attempt := x.Attempt(keyA)
	if _, ok := x.Preempted(keyA, attempt+1, []types.UID{"v1"}, time.Minute, now); ok {
		t.Fatalf("a stale attempt may preempt")
	}
	if _, ok := x.Preempted(keyA, attempt, []types.UID{"v1", "v2"}, time.Minute, now); !ok {
		t.Fatalf("the current attempt may not preempt")
	}
	if x.MayPreempt(keyA, now) {
		t.Errorf("a gang waiting for its victims may preempt again")
	}
	if _, e := x.VictimGone("unrelated", now); e.Activate {
		t.Errorf("a pod no gang waits for woke a gang")
	}
	if _, e := x.VictimGone("v1", now); e.Activate {
		t.Errorf("the first of two victims woke the gang")
	}
	if _, e := x.VictimGone("v1", now); e.Activate {
		t.Errorf("a victim counted twice")
	}
	key, e := x.VictimGone("v2", now)
	if !e.Activate || key != keyA {
		t.Fatalf("the last victim gone: got %v, activate %v; want %v woken", key, e.Activate, keyA)
	}
	if x.MayPreempt(keyA, now.Add(PreemptionCooldown/2)) || !x.MayPreempt(keyA, now.Add(PreemptionCooldown)) {
		t.Errorf("the cooldown after the victims went is not %v", PreemptionCooldown)
	}
}

// One placement per attempt: the first choice stands for the attempt's
// other members; an attempt that failed in a preferred domain moves the
// next choice a level on, without backoff; another failure keeps the level.
func TestPlacementPerAttempt(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	now := time.Now()
	x.ObservePod(keyA, pod("a", ""), false, 2, nil, now)
	x.ObservePod(keyA, pod("b", ""), false, 2, nil, now)
	p, attempt, from := x.Placement(keyA)
	if p != nil || from != 0 {
		t.Fatalf("a new gang has placement %v from level %d", p, from)
	}
	rack := &Placement{Domain: "rack=r0", Level: 0}
	if got, changed := x.Place(keyA, attempt, pod("a", ""), rack); got != rack || !changed {
		t.Fatalf("Place = %v, %v; want the rack, changed", got, changed)
	}
	if got, changed := x.Place(keyA, attempt, pod("b", ""), &Placement{Domain: "rack=r1"}); got != rack || changed {
		t.Fatalf("a second choice within the attempt: %v, %v; want the first", got, changed)
	}
	e := x.Fail(keyA, attempt, OutcomeUnfit, now)
	if !e.RolledBack || e.Backoff != 0 {
		t.Fatalf("a failure in a preferred domain: %+v, want a rollback without backoff", e)
	}
	p, attempt, from = x.Placement(keyA)
	if p != nil || from != 1 {
		t.Fatalf("after the failure: placement %v from level %d, want none from level 1", p, from)
	}
	if _, changed := x.Place(keyA, attempt-1, pod("a", ""), &Placement{Domain: "stale"}); changed {
		t.Fatalf("a stale attempt's choice was recorded")
	}
	block := &Placement{Domain: "block=b0", Level: 1}
	x.Place(keyA, attempt, pod("a", ""), block)
	if e := x.Fail(keyA, attempt, OutcomePermitTimeout, now); e.Backoff == 0 {
		t.Fatalf("a timeout in a preferred domain skips the backoff")
	}
	if _, _, from = x.Placement(keyA); from != 1 {
		t.Fatalf("a timeout moved the level to %d", from)
	}
}

// The queue can be ahead of the informer: the first member's choice is
// recorded even when the plugin's handler has not delivered any member yet,
// so the attempt's next member gets the same domain.
func TestPlacementBeforeTheInformer(t *testing.T) {
	x := NewIndex(Config{Backoff: 10 * time.Second})
	p, attempt, _ := x.Placement(keyA)
	if p != nil {
		t.Fatalf("an unknown gang has placement %v", p)
	}
	rack := &Placement{Domain: "rack=r0", Level: -1}
	if got, _ := x.Place(keyA, attempt, pod("a", ""), rack); got != rack {
		t.Fatalf("Place = %v, want the rack", got)
	}
	if got, _, _ := x.Placement(keyA); got != rack {
		t.Fatalf("the next member's Placement = %v, want the first member's rack", got)
	}
	if c := x.Counts(keyA); c.Present != 1 {
		t.Fatalf("counts %+v: the member that chose is not in its gang", c)
	}
	x.DeletePod(keyA, "a", 0, time.Now())
	if x.Len() != 0 {
		t.Fatalf("the gang outlived its only member")
	}
}
