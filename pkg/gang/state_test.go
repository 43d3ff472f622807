package gang

import (
	"fmt"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// machine drives one gang of minCount 3 through the index's transitions, as
// the plugin would, and checks what each step decides and the live counts
// after it.
type machine struct {
	t       *testing.T
	x       *Index
	now     time.Time
	waiting map[types.UID]bool
	// gone are members the informer's store has as gone before the index
	// heard of it.
	gone map[types.UID]bool
}

const testMinCount = 3

// The machine is the witness: members it says wait at Permit, and every
// bound member except those in its gone set.
func (m *machine) Waiting(uid types.UID) bool { return m.waiting[uid] }

func (m *machine) Live(pod *v1.Pod) bool { return !m.gone[pod.UID] }

// step is one call into the index and what it must decide.
type step struct {
	name string
	do   func(m *machine) (Effects, bool)
	// ok is the call's second result: Reserve accepted, Permit did not
	// reject; true for calls without one.
	ok         bool
	want       Counts
	phase      Phase
	activate   bool
	admitted   bool
	allow      []string
	rolledBack Outcome
	reject     []string
	backoff    time.Duration
	completed  bool
}

func observe(name, node string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		return m.x.ObservePod(keyA, pod(name, node), false, testMinCount, m, m.now), true
	}
}

func terminating(name, node string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		p := pod(name, node)
		p.DeletionTimestamp = &metav1.Time{Time: m.now}
		return m.x.ObservePod(keyA, p, false, testMinCount, m, m.now), true
	}
}

func deleted(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		delete(m.waiting, types.UID(name))
		return m.x.DeletePod(keyA, types.UID(name), testMinCount, m.now), true
	}
}

func reserve(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		return m.x.Reserve(keyA, pod(name, ""), "n-"+name, testMinCount, m.now)
	}
}

// permit runs Permit; a member told to wait is then waiting at Permit.
func permit(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		e, v := m.x.Permit(keyA, types.UID(name), testMinCount, m, m.now)
		if v == VerdictWait {
			m.waiting[types.UID(name)] = true
		}
		for _, uid := range append(e.Allow, e.Reject...) {
			delete(m.waiting, uid)
		}
		return e, v != VerdictReject
	}
}

// leaves is the framework rejecting a waiting member behind the plugin's
// back (its own Permit timer, a preemption): it leaves Permit before its
// Unreserve runs.
func leaves(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		delete(m.waiting, types.UID(name))
		return Effects{}, true
	}
}

// goneFirst is the informer's store having a bound member as terminating
// before the plugin's handler delivered it to the index.
func goneFirst(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		m.gone[types.UID(name)] = true
		return Effects{}, true
	}
}

func unreserve(name string) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		return m.x.Unreserve(keyA, types.UID(name), testMinCount, OutcomeMemberRejected, m.now), true
	}
}

func fail(outcome Outcome) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) { return m.x.Fail(keyA, m.x.Attempt(keyA), outcome, m.now), true }
}

// failAttempt fails a given attempt, as a timer armed for it would.
func failAttempt(attempt uint64, outcome Outcome) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) { return m.x.Fail(keyA, attempt, outcome, m.now), true }
}

func after(d time.Duration) func(*machine) (Effects, bool) {
	return func(m *machine) (Effects, bool) {
		m.now = m.now.Add(d)
		p, _ := m.x.Phase(keyA, m.now)
		return Effects{Counts: m.x.Counts(keyA), Phase: p, Attempt: m.x.Attempt(keyA)}, true
	}
}

// assembled is three pending members: the quorum that wakes the gang.
var assembled = []step{
	{name: "a", do: observe("a", ""), ok: true, want: Counts{Present: 1}, phase: PhaseAssembling},
	{name: "b", do: observe("b", ""), ok: true, want: Counts{Present: 2}, phase: PhaseAssembling},
	{name: "c", do: observe("c", ""), ok: true, want: Counts{Present: 3}, phase: PhaseQueued, activate: true},
}

// twoWaiting is assembled with a and b reserved and waiting at Permit.
var twoWaiting = append(slices.Clone(assembled),
	step{name: "reserve a", do: reserve("a"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
	step{name: "permit a", do: permit("a"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
	step{name: "reserve b", do: reserve("b"), ok: true, want: Counts{Present: 3, Reserved: 2}, phase: PhaseAttempting},
	step{name: "permit b", do: permit("b"), ok: true, want: Counts{Present: 3, Reserved: 2}, phase: PhaseAttempting},
)

func with(base []step, more ...step) []step { return append(slices.Clone(base), more...) }

func TestStateMachine(t *testing.T) {
	const backoff = 10 * time.Second
	rolledBackTwo := step{name: "PostFilter of c", do: fail(OutcomeUnfit), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff,
		rolledBack: OutcomeUnfit, reject: []string{"a", "b"}, backoff: backoff}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "assembling, then the quorum wakes the gang once", steps: with(assembled,
			step{name: "d beyond minCount", do: observe("d", ""), ok: true, want: Counts{Present: 4}, phase: PhaseQueued},
		)},
		{name: "the third reservation admits the attempt and allows the two waiting", steps: with(twoWaiting,
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAttempting},
			step{name: "permit c", do: permit("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAdmitted, admitted: true, allow: []string{"a", "b"}},
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Reserved: 2, Bound: 1}, phase: PhaseAdmitted},
			step{name: "b bound", do: observe("b", "n2"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 2}, phase: PhaseAdmitted},
			step{name: "c bound", do: observe("c", "n3"), ok: true, want: Counts{Present: 3, Bound: 3}, phase: PhaseRunning, completed: true},
			step{name: "d beyond minCount of a running gang goes alone", do: observe("d", ""), ok: true, want: Counts{Present: 4, Bound: 3}, phase: PhaseRunning},
			step{name: "reserve d", do: reserve("d"), ok: true, want: Counts{Present: 4, Reserved: 1, Bound: 3}, phase: PhaseRunning},
			step{name: "permit d", do: permit("d"), ok: true, want: Counts{Present: 4, Reserved: 1, Bound: 3}, phase: PhaseRunning},
			step{name: "PostFilter of a member of a running gang fails nothing", do: fail(OutcomeUnfit), ok: true, want: Counts{}},
		)},
		{name: "a member that fits nowhere rolls the attempt back and backs off", steps: with(twoWaiting, rolledBackTwo,
			step{name: "a's Unreserve belongs to the rollback", do: unreserve("a"), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff},
			step{name: "a second PostFilter in the same backoff", do: fail(OutcomeUnfit), ok: true, want: Counts{}},
			step{name: "reserve during the backoff is refused", do: reserve("a"), ok: false, want: Counts{Present: 3}, phase: PhaseBackingOff},
			step{name: "backoff over", do: after(backoff + time.Second), ok: true, want: Counts{Present: 3}, phase: PhaseQueued},
			step{name: "next attempt", do: reserve("a"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
		)},
		{name: "race 1: a member reserved before a rollback cannot be admitted by it", steps: with(twoWaiting, rolledBackTwo,
			// b's Unreserve has not run yet; c reaches Permit with a stale view.
			step{name: "permit b again", do: permit("b"), ok: false, want: Counts{Present: 3}, phase: PhaseBackingOff},
		)},
		{name: "race 1: a member the framework rejected behind the plugin's back is not counted", steps: with(twoWaiting,
			step{name: "a leaves Permit (timeout, preemption)", do: leaves("a"), ok: true, want: Counts{}},
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAttempting},
			step{name: "permit c fails the attempt instead of admitting it", do: permit("c"), ok: false, want: Counts{Present: 3}, phase: PhaseBackingOff,
				rolledBack: OutcomeMemberRejected, reject: []string{"a", "b"}, backoff: backoff},
			step{name: "a's Unreserve", do: unreserve("a"), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff},
		)},
		{name: "race 1: the attempt's deadline fails it once, a stale deadline never", steps: with(twoWaiting,
			step{name: "deadline of attempt 0", do: failAttempt(0, OutcomePermitTimeout), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff,
				rolledBack: OutcomePermitTimeout, reject: []string{"a", "b"}, backoff: backoff},
			step{name: "backoff over", do: after(backoff + time.Second), ok: true, want: Counts{Present: 3}, phase: PhaseQueued},
			step{name: "a again", do: reserve("a"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
			step{name: "the old deadline again", do: failAttempt(0, OutcomePermitTimeout), ok: true, want: Counts{}},
		)},
		{name: "race 2: terminating members count for nothing", steps: with(assembled,
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Bound: 1}, phase: PhaseQueued},
			step{name: "a terminating", do: terminating("a", "n1"), ok: true, want: Counts{Present: 2}, phase: PhaseAssembling},
			step{name: "replacement a2", do: observe("a2", ""), ok: true, want: Counts{Present: 3}, phase: PhaseQueued, activate: true},
		)},
		{name: "race 2: a bound member the index still counts but the store has as terminating is not counted at admission", steps: with(assembled,
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Bound: 1}, phase: PhaseQueued},
			step{name: "a terminating, index not told yet", do: goneFirst("a"), ok: true, want: Counts{}},
			step{name: "reserve b", do: reserve("b"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 1}, phase: PhaseAttempting},
			step{name: "permit b", do: permit("b"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 1}, phase: PhaseAttempting},
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 2, Bound: 1}, phase: PhaseAttempting},
			step{name: "permit c waits: a does not count", do: permit("c"), ok: true, want: Counts{Present: 2, Reserved: 2}, phase: PhaseAttempting},
		)},
		{name: "race 2: replacements of a gang that ran need a quorum of their own", steps: with(twoWaiting,
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAttempting},
			step{name: "permit c", do: permit("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAdmitted, admitted: true, allow: []string{"a", "b"}},
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Reserved: 2, Bound: 1}, phase: PhaseAdmitted},
			step{name: "b bound", do: observe("b", "n2"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 2}, phase: PhaseAdmitted},
			step{name: "c bound", do: observe("c", "n3"), ok: true, want: Counts{Present: 3, Bound: 3}, phase: PhaseRunning, completed: true},
			step{name: "a terminating", do: terminating("a", "n1"), ok: true, want: Counts{Present: 2, Bound: 2}, phase: PhaseAssembling},
			step{name: "b terminating", do: terminating("b", "n2"), ok: true, want: Counts{Present: 1, Bound: 1}, phase: PhaseAssembling},
			step{name: "c terminating", do: terminating("c", "n3"), ok: true, want: Counts{}, phase: PhaseAssembling},
			step{name: "x", do: observe("x", ""), ok: true, want: Counts{Present: 1}, phase: PhaseAssembling},
			step{name: "y", do: observe("y", ""), ok: true, want: Counts{Present: 2}, phase: PhaseAssembling},
			step{name: "z", do: observe("z", ""), ok: true, want: Counts{Present: 3}, phase: PhaseQueued, activate: true},
			step{name: "reserve x", do: reserve("x"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
			step{name: "permit x waits for its own gang", do: permit("x"), ok: true, want: Counts{Present: 3, Reserved: 1}, phase: PhaseAttempting},
		)},
		{name: "a replacement of one member of a running gang joins the members still bound", steps: with(assembled,
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Bound: 1}, phase: PhaseQueued},
			step{name: "b bound", do: observe("b", "n2"), ok: true, want: Counts{Present: 3, Bound: 2}, phase: PhaseQueued},
			// Placed elsewhere (another replica, before a restart): not measured here.
			step{name: "c bound", do: observe("c", "n3"), ok: true, want: Counts{Present: 3, Bound: 3}, phase: PhaseRunning, completed: false},
			step{name: "c terminating", do: terminating("c", "n3"), ok: true, want: Counts{Present: 2, Bound: 2}, phase: PhaseAssembling},
			step{name: "c2", do: observe("c2", ""), ok: true, want: Counts{Present: 3, Bound: 2}, phase: PhaseQueued, activate: true},
			step{name: "reserve c2", do: reserve("c2"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 2}, phase: PhaseAttempting},
			step{name: "permit c2", do: permit("c2"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 2}, phase: PhaseAdmitted, admitted: true},
		)},
		{name: "race 2: a reserved member that starts terminating fails the attempt", steps: with(twoWaiting,
			step{name: "a terminating", do: terminating("a", ""), ok: true, want: Counts{Present: 2}, phase: PhaseBackingOff,
				rolledBack: OutcomeMemberDeleted, reject: []string{"b"}, backoff: backoff},
		)},
		{name: "race 3: Reserve does not bring a deleted pod back", steps: with(assembled,
			step{name: "c deleted during its cycle", do: deleted("c"), ok: true, want: Counts{Present: 2}, phase: PhaseAssembling},
			step{name: "reserve c", do: reserve("c"), ok: false, want: Counts{}},
			step{name: "a, b deleted", do: func(m *machine) (Effects, bool) { deleted("a")(m); return deleted("b")(m) }, ok: true, want: Counts{}},
		)},
		{name: "race 5: an admitted attempt whose bind fails goes again without a backoff", steps: with(twoWaiting,
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAttempting},
			step{name: "permit c", do: permit("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAdmitted, admitted: true, allow: []string{"a", "b"}},
			step{name: "a's bind fails before any binding is observed", do: unreserve("a"), ok: true, want: Counts{Present: 3}, phase: PhaseQueued,
				rolledBack: OutcomeBindFailure, reject: []string{"b", "c"}},
			step{name: "b's bind fails too: no second rollback", do: unreserve("b"), ok: true, want: Counts{Present: 3}, phase: PhaseQueued},
		)},
		{name: "race 6: PostFilter of a member beyond minCount of an admitted gang fails nothing", steps: with(twoWaiting,
			step{name: "reserve c", do: reserve("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAttempting},
			step{name: "permit c", do: permit("c"), ok: true, want: Counts{Present: 3, Reserved: 3}, phase: PhaseAdmitted, admitted: true, allow: []string{"a", "b"}},
			step{name: "d", do: observe("d", ""), ok: true, want: Counts{Present: 4, Reserved: 3}, phase: PhaseAdmitted},
			step{name: "PostFilter of d", do: fail(OutcomeUnfit), ok: true, want: Counts{}},
		)},
		{name: "race 6: two members failing together roll the attempt back once", steps: with(twoWaiting,
			step{name: "a's Unreserve", do: unreserve("a"), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff,
				rolledBack: OutcomeMemberRejected, reject: []string{"b"}, backoff: backoff},
			step{name: "b's Unreserve", do: unreserve("b"), ok: true, want: Counts{Present: 3}, phase: PhaseBackingOff},
		)},
		{name: "a bound member that completes the quorum admits the waiting ones", steps: with(twoWaiting,
			step{name: "c bound (placed before a restart)", do: observe("c", "n3"), ok: true, want: Counts{Present: 3, Reserved: 2, Bound: 1}, phase: PhaseAdmitted,
				admitted: true, allow: []string{"a", "b"}},
		)},
		{name: "a gang with bound members does not back off", steps: with(assembled,
			step{name: "a bound", do: observe("a", "n1"), ok: true, want: Counts{Present: 3, Bound: 1}, phase: PhaseQueued},
			step{name: "reserve b", do: reserve("b"), ok: true, want: Counts{Present: 3, Reserved: 1, Bound: 1}, phase: PhaseAttempting},
			step{name: "PostFilter of c", do: fail(OutcomeUnfit), ok: true, want: Counts{Present: 3, Bound: 1}, phase: PhaseQueued,
				rolledBack: OutcomeUnfit, reject: []string{"b"}},
		)},
		{name: "a reserved member deleted fails the attempt", steps: with(twoWaiting,
			step{name: "a deleted", do: deleted("a"), ok: true, want: Counts{Present: 2, Reserved: 0}, phase: PhaseBackingOff,
				rolledBack: OutcomeMemberDeleted, reject: []string{"b"}, backoff: backoff},
		)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &machine{t: t, x: NewIndex(Config{Backoff: backoff}), now: time.Unix(1_000_000, 0), waiting: map[types.UID]bool{}, gone: map[types.UID]bool{}}
			for i, s := range tc.steps {
				e, ok := s.do(m)
				where := fmt.Sprintf("step %d (%s)", i, s.name)
				if ok != s.ok {
					t.Fatalf("%s: ok = %v, want %v", where, ok, s.ok)
				}
				if s.want != (Counts{}) || e.Counts != (Counts{}) {
					if got := m.x.Counts(keyA); got != s.want {
						t.Fatalf("%s: counts = %+v, want %+v", where, got, s.want)
					}
					if p, _ := m.x.Phase(keyA, m.now); p != s.phase {
						t.Fatalf("%s: phase = %v, want %v", where, p, s.phase)
					}
				}
				if e.Activate != s.activate || e.Admitted != s.admitted || e.Completed != s.completed {
					t.Fatalf("%s: activate %v admitted %v completed %v; want %v %v %v", where, e.Activate, e.Admitted, e.Completed, s.activate, s.admitted, s.completed)
				}
				if got := sorted(e.Allow); !slices.Equal(got, s.allow) {
					t.Fatalf("%s: allow %v, want %v", where, got, s.allow)
				}
				if (s.rolledBack != "") != e.RolledBack || e.Outcome != s.rolledBack || e.Backoff != s.backoff {
					t.Fatalf("%s: rolled back %v (%q, backoff %v); want %q, backoff %v", where, e.RolledBack, e.Outcome, e.Backoff, s.rolledBack, s.backoff)
				}
				if got := sorted(e.Reject); !slices.Equal(got, s.reject) {
					t.Fatalf("%s: reject %v, want %v", where, got, s.reject)
				}
			}
		})
	}
}

func sorted(uids []types.UID) []string {
	var out []string
	for _, uid := range uids {
		out = append(out, string(uid))
	}
	slices.Sort(out)
	return out
}

// Race 9: members of another scheduler, and pods created bound, stay in the
// index but count toward no quorum.
func TestOnlyOwnMembersCount(t *testing.T) {
	x := NewIndex(Config{SchedulerName: "ours"})
	now := time.Now()
	ours := func(name, node string) *v1.Pod {
		p := pod(name, node)
		p.Spec.SchedulerName = "ours"
		return p
	}
	x.ObservePod(keyA, ours("a", ""), false, 2, nil, now)
	other := pod("b", "")
	other.Spec.SchedulerName = "default-scheduler"
	x.ObservePod(keyA, other, false, 2, nil, now)
	x.ObservePod(keyA, ours("c", "n1"), true, 2, nil, now)
	if got := x.Counts(keyA); got != (Counts{Present: 1}) {
		t.Fatalf("counts = %+v, want only a present", got)
	}
	if !x.Has(keyA, "b") || !x.Has(keyA, "c") {
		t.Fatalf("members of other schedulers and pods created bound must stay in the index")
	}
	// A pod the initial list delivers bound may have been placed by this
	// scheduler before a restart: it counts.
	x.ObservePod(keyA, ours("d", "n2"), false, 2, nil, now)
	if got := x.Counts(keyA); got != (Counts{Present: 2, Bound: 1}) {
		t.Fatalf("counts = %+v, want a present and d bound", got)
	}
	if r := x.Ready(keyA, ours("e", ""), now); r.Present != 3 || r.Known {
		t.Fatalf("Ready of a pod not yet indexed = %+v, want it counted", r)
	}
	if r := x.Ready(keyA, other, now); r.Present != 2 || !r.Known {
		t.Fatalf("Ready of another scheduler's pod = %+v", r)
	}
}

// The tombstones of deleted members are forgotten after tombstoneTTL.
func TestTombstonesExpire(t *testing.T) {
	x := NewIndex(Config{})
	now := time.Now()
	x.ObservePod(keyA, pod("a", ""), false, 1, nil, now)
	x.DeletePod(keyA, "a", 1, now)
	if _, ok := x.Reserve(keyA, pod("a", ""), "n1", 1, now); ok {
		t.Fatalf("a deleted member was reserved")
	}
	later := now.Add(tombstoneTTL + time.Second)
	x.DeletePod(keyA, "zz", 1, later)
	if len(x.deleted) != 1 || len(x.tombstones) != 1 {
		t.Fatalf("tombstones after the TTL: %d, %d; want only the newest", len(x.deleted), len(x.tombstones))
	}
}
