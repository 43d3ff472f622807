package workloadcoscheduling

import (
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// Each test below is one path through PreEnqueue → PreFilter → Reserve →
// Permit → PostFilter/Unreserve, and the numbered races of the state machine
// issue as sequences of calls, through a real framework (flow_test.go).

func TestFlowGangAdmittedTogether(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 3)
	a, b, c := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj(), gangPod("c", "job", "").Obj()
	f.add(a, b)
	f.wantCode("PreEnqueue below quorum", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
	if got := f.events(ReasonWaitingForGangMembers); len(got) != 2 { // the member and the Workload, once
		t.Fatalf("waiting events: %v", got)
	}
	f.preEnqueue(b)
	if got := f.events(ReasonWaitingForGangMembers); len(got) != 0 {
		t.Fatalf("the same reason was reported again: %v", got)
	}
	f.add(c)
	if got := f.activator.take(); len(got) != 3 {
		t.Fatalf("the quorum activated %v, want the 3 members", got)
	}
	for _, p := range []*v1.Pod{a, b} {
		f.wantCode("PreEnqueue", f.preEnqueue(p), fwk.Success)
		f.wantCode("cycle of "+p.Name, f.cycle(p, "n-"+p.Name), fwk.Wait)
	}
	f.wantCode("cycle of the last member", f.cycle(c, "n-c"), fwk.Success)
	for _, p := range []*v1.Pod{a, b} {
		f.wantCode("wait of "+p.Name, f.outcome(p), fwk.Success)
		f.finish(p, false)
	}
	// The user was told the gang waited for members: its admission is told
	// too, once.
	if got := f.events(ReasonGangAdmitted); len(got) != 1 {
		t.Fatalf("admitted events of a gang reported waiting: %v", got)
	}
}

// A gang nobody was told about (its members arrived together, its first
// attempt succeeded) costs its Workload no event.
func TestFlowUntroubledGangTellsNothing(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	f.wantCode("a waits at Permit", f.cycle(a, "n1"), fwk.Wait)
	f.wantCode("b admits the gang", f.cycle(b, "n2"), fwk.Success)
	if got := append(f.events(ReasonGangAdmitted), f.events(ReasonWaitingForGangMembers)...); len(got) != 0 {
		t.Fatalf("events of an untroubled gang: %v", got)
	}
}

func TestFlowRollbackAtPostFilter(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 3)
	a, b, c := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj(), gangPod("c", "job", "").Obj()
	f.add(a, b, c)
	f.cycle(a, "n1")
	f.cycle(b, "n2")
	f.wantCode("c fits nowhere", f.cycle(c, ""), fwk.Unschedulable)
	f.wantCode("a rejected at once", f.outcome(a), fwk.Unschedulable)
	f.wantCode("b rejected at once", f.outcome(b), fwk.Unschedulable)
	f.finish(a, false)
	f.finish(b, false)
	if got := f.events(ReasonGangRolledBack); len(got) != 1 {
		t.Fatalf("one rollback, one event; got %v", got)
	}
	if c := f.counts(a); c != (gang.Counts{Present: 3}) {
		t.Fatalf("counts after the rollback: %+v", c)
	}
	f.wantCode("PreEnqueue during the backoff", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
	f.now = f.now.Add(11 * time.Second)
	f.wantCode("PreEnqueue after the backoff", f.preEnqueue(a), fwk.Success)
	f.cycle(a, "n1")
	f.cycle(b, "n2")
	f.wantCode("c admits the next attempt", f.cycle(c, "n3"), fwk.Success)
	if got := f.events(ReasonGangAdmitted); len(got) != 1 {
		t.Fatalf("the admission after a rollback is told once; got %v", got)
	}
}

// Race 1: the framework rejects a waiting member (its Permit timer, a
// preemption) and its Unreserve has not run yet when the last member
// arrives: the gang must not be admitted without it.
func TestFlowMemberRejectedBehindThePluginsBack(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 3)
	a, b, c := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj(), gangPod("c", "job", "").Obj()
	f.add(a, b, c)
	f.cycle(a, "n1")
	f.cycle(b, "n2")
	f.fh.GetWaitingPod(a.UID).Reject("DefaultPreemption", "preempted")
	f.wantCode("a rejected", f.outcome(a), fwk.Unschedulable)
	f.wantCode("c must not complete the gang", f.cycle(c, "n3"), fwk.Unschedulable)
	f.wantCode("b rejected with it", f.outcome(b), fwk.Unschedulable)
	f.finish(a, false)
	f.finish(b, false)
	if got := f.events(ReasonGangRolledBack); len(got) != 1 {
		t.Fatalf("rollback events: %v", got)
	}
	if c := f.counts(a); c.Placed() != 0 {
		t.Fatalf("reservations left after the rollback: %+v", c)
	}
}

// Race 1: a member that reserved just before a rollback reaches Permit
// after it: it is rejected, not counted.
func TestFlowPermitAfterRollback(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	f.cycle(a, "n1")
	key, _ := gang.KeyOf(a)
	state := framework.NewCycleState()
	if s := f.fh.RunReservePluginsReserve(f.ctx, state, b, "n2"); !s.IsSuccess() {
		t.Fatal(s)
	}
	// The attempt's deadline passes between b's Reserve and its Permit.
	e := f.pl.index.Fail(key, f.pl.index.Attempt(key), gang.OutcomePermitTimeout, f.now)
	f.pl.carryOut(f.ctx, key, e, "deadline")
	f.wantCode("b's Permit after the rollback", f.fh.RunPermitPlugins(f.ctx, state, b, "n2"), fwk.Unschedulable)
	f.wantCode("a rejected", f.outcome(a), fwk.Unschedulable)
}

// Race 2: the members of a gang that ran are terminating (a finalizer) when
// their replacements arrive; the replacements must not be admitted on the
// strength of the old members.
func TestFlowTerminatingMembersDoNotCount(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 3)
	old := pods(gangPod("o1", "job", ""), gangPod("o2", "job", ""), gangPod("o3", "job", ""))
	f.add(old...)
	// The old gang is admitted and runs.
	f.cycle(old[0], "n1")
	f.cycle(old[1], "n2")
	f.wantCode("o3 admits the old gang", f.cycle(old[2], "n3"), fwk.Success)
	old[2] = f.finish(old[2], false)
	old[0], old[1] = f.finish(old[0], false), f.finish(old[1], false)
	if c := f.counts(old[0]); c.Bound != 3 {
		t.Fatalf("counts of the running gang: %+v", c)
	}
	for _, p := range old {
		f.update(p, terminating(p))
	}
	if c := f.counts(old[0]); c != (gang.Counts{}) {
		t.Fatalf("terminating members count: %+v", c)
	}
	repl := pods(gangPod("r1", "job", ""), gangPod("r2", "job", ""))
	f.add(repl...)
	f.wantCode("PreEnqueue with 2 of 3 live members", f.preEnqueue(repl[0]), fwk.UnschedulableAndUnresolvable)
	r3 := gangPod("r3", "job", "").Obj()
	f.add(r3)
	f.wantCode("r1 waits for its own gang", f.cycle(repl[0], "n1"), fwk.Wait)
	f.wantCode("r2 waits for its own gang", f.cycle(repl[1], "n2"), fwk.Wait)
	f.wantCode("r3 fits nowhere while the old members hold their nodes", f.cycle(r3, ""), fwk.Unschedulable)
	f.wantCode("r1 rejected", f.outcome(repl[0]), fwk.Unschedulable)
}

// Race 3: a pod deleted during its own scheduling cycle does not come back
// at Reserve, and its gang leaves the index once its members are gone.
func TestFlowDeletedDuringItsCycle(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	state := framework.NewCycleState()
	if _, s, _ := f.fh.RunPreFilterPlugins(f.ctx, state, a); !s.IsSuccess() {
		t.Fatal(s)
	}
	f.remove(a)
	f.wantCode("Reserve of the deleted pod", f.fh.RunReservePluginsReserve(f.ctx, state, a, "n1"), fwk.Unschedulable)
	f.fh.RunReservePluginsUnreserve(f.ctx, state, a, "n1")
	f.remove(b)
	if n := f.pl.index.Len(); n != 0 {
		t.Fatalf("%d gangs left in the index", n)
	}
}

// Race 4: a portable pod whose annotations move it to another gang leaves
// its old one.
func TestFlowPortablePodMoves(t *testing.T) {
	f := newFlow(t)
	portable := func(workload string) *v1.Pod {
		p := gangPod("p", "", "").Obj()
		p.Spec.WorkloadRef = nil
		p.Annotations = map[string]string{gang.WorkloadAnnotation: workload, gang.PodGroupAnnotation: "workers"}
		return p
	}
	before, after := portable("job"), portable("job2")
	f.add(before)
	f.update(before, after)
	if c := f.counts(before); c.Present != 0 {
		t.Fatalf("the old gang still counts the pod: %+v", c)
	}
	if c := f.counts(after); c.Present != 1 {
		t.Fatalf("the new gang does not count the pod: %+v", c)
	}
	// The pod was not deleted: it may reserve in its new gang.
	f.portableWorkload("job2", 2)
	if s := f.fh.RunReservePluginsReserve(f.ctx, framework.NewCycleState(), after, "n1"); !s.IsSuccess() {
		t.Fatalf("Reserve in the new gang: %v", s)
	}
}

// Race 5: an admitted gang whose binding fails goes again at once.
func TestFlowBindFailureAfterAdmission(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	f.cycle(a, "n1")
	f.wantCode("b admits the gang", f.cycle(b, "n2"), fwk.Success)
	f.finish(a, true) // a's binding fails before b's binding is observed
	if got := f.events(ReasonGangRolledBack); len(got) != 1 {
		t.Fatalf("rollback events: %v", got)
	}
	f.activator.take()
	f.wantCode("a goes again without a backoff", f.preEnqueue(a), fwk.Success)
}

// Race 6: PostFilter of a member beyond minCount of an admitted gang does
// not roll it back, and two members failing together roll back once.
func TestFlowNoSpuriousRollbacks(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b, c := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj(), gangPod("c", "job", "").Obj()
	f.add(a, b, c)
	f.cycle(a, "n1")
	f.cycle(b, "n2")
	f.wantCode("c beyond minCount fits nowhere", f.cycle(c, ""), fwk.Unschedulable)
	if got := f.events(ReasonGangRolledBack); len(got) != 0 {
		t.Fatalf("an admitted gang was rolled back: %v", got)
	}

	f.workload("job2", 3)
	x, y, z := gangPod("x", "job2", "").Obj(), gangPod("y", "job2", "").Obj(), gangPod("z", "job2", "").Obj()
	f.add(x, y, z)
	f.cycle(x, "n1")
	f.cycle(y, "n2")
	f.fh.GetWaitingPod(x.UID).Reject("other", "timeout")
	f.fh.GetWaitingPod(y.UID).Reject("other", "timeout")
	f.finish(x, false)
	f.finish(y, false)
	if got := f.events(ReasonGangRolledBack); len(got) != 1 {
		t.Fatalf("two failures, want one rollback; got %v", got)
	}
}

// Race 8: the release of a rolled-back member's node does not requeue the
// members of gangs that back off.
func TestFlowHintsAfterRollback(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	f.cycle(a, "n1")
	f.cycle(b, "")
	released := a.DeepCopy()
	released.Spec.NodeName = "n1"
	if hint, _ := f.pl.isSchedulableAfterPodDeleted(f.logger, b, released, nil); hint != fwk.QueueSkip {
		t.Fatalf("hint for a gang that backs off = %v", hint)
	}
}

// Race 9: a member handed to another scheduler does not complete a quorum.
func TestFlowOtherSchedulersMembersDoNotCount(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a := gangPod("a", "job", "").Obj()
	other := gangPod("b", "job", "").SchedulerName("default-scheduler").Obj()
	f.add(a, other)
	f.wantCode("PreEnqueue with one member of ours", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
}

// The queue brings the quorum's last member to Reserve before the plugin's
// handler has seen it: the members gated before are woken all the same.
func TestFlowQuorumCompletedAtReserve(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a)
	f.wantCode("a below quorum", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
	f.activator.take()
	// b is in the informer's store, not yet delivered to the plugin.
	if err := f.informers.Core().V1().Pods().Informer().GetStore().Add(b); err != nil {
		t.Fatal(err)
	}
	f.wantCode("b passes PreEnqueue", f.preEnqueue(b), fwk.Success)
	f.wantCode("b waits at Permit", f.cycle(b, "n1"), fwk.Wait)
	if got := f.activator.take(); len(got) != 1 || got[0] != "ns/a" {
		t.Fatalf("activated %v, want ns/a", got)
	}
	f.pl.podObserved(f.logger, b, false) // the handler catches up
	if got := f.activator.take(); len(got) != 0 {
		t.Fatalf("activated again: %v", got)
	}
}

// The last victim of a preemption is counted by the Pod/Delete hint of one
// member, before the plugin's handler sees it: the gang's other members,
// gated until then, are woken all the same.
func TestFlowLastVictimSeenByAHint(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	a, b := gangPod("a", "job", "").Obj(), gangPod("b", "job", "").Obj()
	f.add(a, b)
	key, _ := gang.KeyOf(a)
	victim := st.MakePod().Namespace("ns").Name("victim").UID("victim").Node("n1").Obj()
	if _, ok := f.pl.index.Preempted(key, f.pl.index.Attempt(key), []types.UID{victim.UID}, time.Minute, f.now); !ok {
		t.Fatal("the gang may not preempt")
	}
	f.wantCode("a waits for the victim", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
	f.activator.take()
	if _, err := f.pl.isSchedulableAfterPodDeleted(f.logger, a, victim, nil); err != nil {
		t.Fatal(err)
	}
	// The hint wakes them from another goroutine.
	var got []string
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		got = append(got, f.activator.take()...)
	}
	sort.Strings(got)
	if len(got) != 2 || got[0] != "ns/a" || got[1] != "ns/b" {
		t.Fatalf("activated %v, want ns/a and ns/b", got)
	}
	f.pl.victimGone(f.logger, victim) // the handler catches up
	f.wantCode("a passes PreEnqueue", f.preEnqueue(a), fwk.Success)
	if got := f.activator.take(); len(got) != 0 {
		t.Fatalf("activated again: %v", got)
	}
}
