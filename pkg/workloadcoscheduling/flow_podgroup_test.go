package workloadcoscheduling

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// A PodGroup's minMember can change; the attempt under way keeps the quorum
// it started with, and the next one has the new one.
func TestFlowPodGroupMinMemberChangesForTheNextAttempt(t *testing.T) {
	f := newFlow(t)
	pg := f.podGroup("job", 3, nil)
	a, b, c, d := podGroupPod("a", "job"), podGroupPod("b", "job"), podGroupPod("c", "job"), podGroupPod("d", "job")
	f.add(a, b, c, d)
	f.wantCode("a waits", f.cycle(a, "n1"), fwk.Wait)
	f.wantCode("b waits", f.cycle(b, "n2"), fwk.Wait)
	raised := pg.DeepCopy()
	raised.Spec.MinMember, raised.Generation = 4, 2
	f.pl.podGroupUpdated(f.logger, pg, raised)
	f.wantCode("c completes the attempt by its quorum of 3", f.cycle(c, "n3"), fwk.Success)
	for _, p := range []*v1.Pod{a, b} {
		f.wantCode(p.Name+" allowed", f.outcome(p), fwk.Success)
	}
	if policy, _ := f.pl.resolver.ResolveKey(gang.Key{Namespace: "ns", Workload: "job", Source: gang.SourcePodGroup}); policy.MinCount != 4 {
		t.Fatalf("the next attempt's quorum: %d, want 4", policy.MinCount)
	}

	// A smaller minMember lets a gang waiting for members go at once.
	f2 := newFlow(t)
	pg2 := f2.podGroup("job", 3, nil)
	x, y := podGroupPod("x", "job"), podGroupPod("y", "job")
	f2.add(x, y)
	f2.wantCode("x waits for a third member", f2.preEnqueue(x), fwk.UnschedulableAndUnresolvable)
	f2.activator.take()
	lowered := pg2.DeepCopy()
	lowered.Spec.MinMember, lowered.Generation = 2, 2
	f2.pl.podGroupUpdated(f2.logger, pg2, lowered)
	if got := f2.activator.take(); len(got) != 2 {
		t.Fatalf("a lowered minMember activated %v, want both members", got)
	}
	f2.wantCode("x goes", f2.preEnqueue(x), fwk.Success)
}

// minResources above the cluster's free capacity: the gang is not tried
// (nothing reserved), the PodGroup's event names what is short, and the
// gang backs off; within capacity it is tried as usual.
func TestFlowPodGroupMinResources(t *testing.T) {
	node := func(name string) *v1.Node {
		return st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "2", v1.ResourcePods: "10"}).Obj()
	}
	f := newFlow(t, node("n1"), node("n2"))
	f.podGroup("big", 2, func(pg *spv1alpha1.PodGroup) {
		pg.Spec.MinResources = v1.ResourceList{v1.ResourceCPU: resource.MustParse("6"), "example.com/gpu": resource.MustParse("1")}
	})
	a, b := podGroupPod("a", "big"), podGroupPod("b", "big")
	f.add(a, b)
	s := f.cycle(a, "n1")
	f.wantCode("a gang whose minResources cannot fit", s, fwk.UnschedulableAndUnresolvable)
	for _, want := range []string{"cpu: 6 wanted, 4 free", "example.com/gpu: 1 wanted, 0 free", "backing off"} {
		if !strings.Contains(s.Message(), want) {
			t.Errorf("status %q does not say %q", s.Message(), want)
		}
	}
	if got := f.events(ReasonMinResourcesUnfit); len(got) != 1 || !strings.Contains(got[0], "cpu: 6 wanted, 4 free") {
		t.Fatalf("%s events: %v", ReasonMinResourcesUnfit, got)
	}
	if c := f.counts(a); c.Placed() != 0 {
		t.Fatalf("something was reserved: %+v", c)
	}
	f.wantCode("b backs off with its gang", f.preEnqueue(b), fwk.UnschedulableAndUnresolvable)

	f.podGroup("small", 2, func(pg *spv1alpha1.PodGroup) {
		pg.Spec.MinResources = v1.ResourceList{v1.ResourceCPU: resource.MustParse("3")}
	})
	c, d := podGroupPod("c", "small"), podGroupPod("d", "small")
	f.add(c, d)
	f.wantCode("c is tried", f.cycle(c, "n1"), fwk.Wait)
	f.wantCode("d is not checked again and admits the gang", f.cycle(d, "n2"), fwk.Success)
}

// Free capacity counts what pods of lower priority than the gang hold: the
// gang may preempt them.
func TestFreeCapacityCountsLowerPriorityPods(t *testing.T) {
	n := framework.NewNodeInfo()
	n.SetNode(st.MakeNode().Name("n1").Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourcePods: "10"}).Obj())
	n.AddPod(st.MakePod().Name("low").Priority(1).Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj())
	n.AddPod(st.MakePod().Name("high").Priority(100).Req(map[v1.ResourceName]string{v1.ResourceCPU: "2"}).Obj())
	for _, tc := range []struct {
		priority int32
		cpu      int64
		pods     int64
	}{{priority: 0, cpu: 1000, pods: 8}, {priority: 50, cpu: 2000, pods: 9}, {priority: 200, cpu: 4000, pods: 10}} {
		free := freeCapacity([]fwk.NodeInfo{n}, tc.priority)
		if free[v1.ResourceCPU] != tc.cpu || free[v1.ResourcePods] != tc.pods {
			t.Errorf("priority %d: free cpu %dm, pods %d; want %dm, %d", tc.priority, free[v1.ResourceCPU], free[v1.ResourcePods], tc.cpu, tc.pods)
		}
	}
}

// A pod with references of more than one API is told once which one it
// follows.
func TestFlowIgnoredReferenceToldOnce(t *testing.T) {
	f := newFlow(t)
	f.workload("job", 2)
	f.podGroup("job", 5, nil)
	both := gangPod("both", "job", "").Label(gang.PodGroupLabel, "job").Obj()
	f.add(both)
	f.preEnqueue(both)
	f.preEnqueue(both)
	got := f.events(ReasonReferenceIgnored)
	if len(got) != 1 || !strings.Contains(got[0], "gang ns/job/workers") || !strings.Contains(got[0], "label "+gang.PodGroupLabel) {
		t.Fatalf("%s events: %v", ReasonReferenceIgnored, got)
	}
	if c := f.counts(both); c.Present != 1 {
		t.Fatalf("the pod is not in the Workload's gang: %+v", c)
	}
}

// scheduleTimeoutSeconds is the gang's Permit wait, clamped like the
// Workload annotation; an invalid one is ignored with an event.
func TestFlowPodGroupScheduleTimeout(t *testing.T) {
	f := newFlow(t)
	for _, tc := range []struct {
		seconds *int32
		want    time.Duration
		event   bool
	}{
		{nil, 60 * time.Second, false},
		{ptr.To[int32](7), 7 * time.Second, false},
		{ptr.To[int32](0), 60 * time.Second, true},
		{ptr.To[int32](3600), workloadref.MaxPermitWaitingTime - permitBackstop, true},
	} {
		f.podGroup("job", 2, func(pg *spv1alpha1.PodGroup) { pg.Spec.ScheduleTimeoutSeconds = tc.seconds })
		policy, reason := f.pl.resolver.ResolveKey(gang.Key{Namespace: "ns", Workload: "job", Source: gang.SourcePodGroup})
		if reason != nil {
			t.Fatal(reason)
		}
		if got := f.pl.attemptTimeout(policy); got != tc.want {
			t.Errorf("scheduleTimeoutSeconds %v: attempt timeout %v, want %v", tc.seconds, got, tc.want)
		}
		if got := f.events(ReasonInvalidScheduleTimeout); (len(got) == 1) != tc.event {
			t.Errorf("scheduleTimeoutSeconds %v: events %v", tc.seconds, got)
		}
	}
}

// Labels can change: a pod relabelled into another PodGroup leaves its old
// gang, as a portable pod whose annotations change does.
func TestFlowPodGroupRelabelled(t *testing.T) {
	f := newFlow(t)
	f.podGroup("a", 2, nil)
	f.podGroup("b", 2, nil)
	before, other := podGroupPod("p", "a"), podGroupPod("q", "b")
	f.add(before, other)
	after := before.DeepCopy()
	after.Labels[gang.PodGroupLabel] = "b"
	f.update(before, after)
	if c := f.counts(before); c.Present != 0 {
		t.Fatalf("PodGroup a still counts the pod: %+v", c)
	}
	if c := f.counts(after); c.Present != 2 {
		t.Fatalf("PodGroup b counts %+v, want both pods", c)
	}
	f.wantCode("p waits", f.cycle(after, "n1"), fwk.Wait)
	f.wantCode("q admits gang b", f.cycle(other, "n2"), fwk.Success)
}
