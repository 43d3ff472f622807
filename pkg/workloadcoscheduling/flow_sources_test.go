package workloadcoscheduling

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// gangSource is one API a gang can come from, as the flow tests drive it:
// its object created and deleted as its informer would deliver them, and a
// member pod that references it.
type gangSource struct {
	name string
	// create records the gang's object (a Workload with podGroup "workers",
	// or a PodGroup) with the quorum; remove deletes it.
	create func(f *flow, name string, minCount int32)
	remove func(f *flow, name string)
	member func(name, object string) *v1.Pod
	// serve has the API served (its CRD installed); missing is the reason
	// code of a member whose object does not exist then.
	serve   func(f *flow)
	missing string
}

var gangSources = []gangSource{
	{
		name:   "spec.workloadRef",
		create: func(f *flow, name string, minCount int32) { f.workload(name, minCount) },
		remove: func(f *flow, name string) {
			w := &schedulingv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
			f.pl.resolver.DeleteWorkload(w)
			f.pl.workloadDeleted(f.logger, w, gang.SourceWorkload)
		},
		member:  func(name, object string) *v1.Pod { return gangPod(name, object, "").Obj() },
		serve:   func(*flow) {},
		missing: "WorkloadNotFound",
	},
	{
		name:   "portable annotations",
		create: func(f *flow, name string, minCount int32) { f.portableWorkload(name, minCount) },
		remove: func(f *flow, name string) {
			w := &wcsv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
			f.pl.resolver.DeletePortableWorkload(w)
			f.pl.workloadDeleted(f.logger, w, gang.SourcePortable)
		},
		member: func(name, object string) *v1.Pod {
			return st.MakePod().Namespace("ns").Name(name).UID(name).SchedulerName(flowProfile).
				Annotation(gang.WorkloadAnnotation, object).Annotation(gang.PodGroupAnnotation, "workers").Obj()
		},
		serve:   func(f *flow) { f.pl.resolver.ServePortable(nil) },
		missing: "WorkloadNotFound",
	},
	{
		name:   "PodGroup label",
		create: func(f *flow, name string, minCount int32) { f.podGroup(name, minCount, nil) },
		remove: func(f *flow, name string) {
			pg := &spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
			f.pl.resolver.DeletePodGroup(pg)
			f.pl.workloadDeleted(f.logger, pg, gang.SourcePodGroup)
		},
		member:  podGroupPod,
		serve:   func(f *flow) { f.pl.resolver.ServePodGroups(nil) },
		missing: workloadref.PodGroupMissing,
	},
}

// podGroup records a PodGroup of minMember minCount, as its informer would
// deliver it; edit, when not nil, changes it first.
func (f *flow) podGroup(name string, minCount int32, edit func(*spv1alpha1.PodGroup)) *spv1alpha1.PodGroup {
	pg := &spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 1},
		Spec: spv1alpha1.PodGroupSpec{MinMember: minCount}}
	if edit != nil {
		edit(pg)
	}
	f.pl.resolver.ServePodGroups(nil)
	f.pl.podGroupAdded(f.logger, pg)
	return pg
}

// podGroupPod is a pod labelled into the PodGroup, for our scheduler.
func podGroupPod(name, podGroup string) *v1.Pod {
	return st.MakePod().Namespace("ns").Name(name).UID(name).SchedulerName(flowProfile).
		Label(gang.PodGroupLabel, podGroup).Obj()
}

// TestFlowLifecycleOfEverySource runs the gang lifecycle (admission,
// rollback and backoff, a missing object, a deleted one, a member lost
// under a reservation) through each source of gangs: one table, three
// sources, the same behaviour.
func TestFlowLifecycleOfEverySource(t *testing.T) {
	for _, src := range gangSources {
		t.Run(src.name, func(t *testing.T) {
			t.Run("admitted together", func(t *testing.T) {
				f := newFlow(t)
				src.create(f, "job", 3)
				a, b, c := src.member("a", "job"), src.member("b", "job"), src.member("c", "job")
				f.add(a, b)
				f.wantCode("PreEnqueue below quorum", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
				f.add(c)
				if got := f.activator.take(); len(got) != 3 {
					t.Fatalf("the quorum activated %v, want the 3 members", got)
				}
				f.wantCode("a waits", f.cycle(a, "n1"), fwk.Wait)
				f.wantCode("b waits", f.cycle(b, "n2"), fwk.Wait)
				f.wantCode("c admits the gang", f.cycle(c, "n3"), fwk.Success)
				f.wantCode("a allowed", f.outcome(a), fwk.Success)
				f.wantCode("b allowed", f.outcome(b), fwk.Success)
			})
			t.Run("rolled back at once, backs off, admitted next", func(t *testing.T) {
				f := newFlow(t)
				src.create(f, "job", 3)
				a, b, c := src.member("a", "job"), src.member("b", "job"), src.member("c", "job")
				f.add(a, b, c)
				f.cycle(a, "n1")
				f.cycle(b, "n2")
				f.wantCode("c fits nowhere", f.cycle(c, ""), fwk.Unschedulable)
				f.wantCode("a rejected at once", f.outcome(a), fwk.Unschedulable)
				f.wantCode("b rejected at once", f.outcome(b), fwk.Unschedulable)
				f.finish(a, false)
				f.finish(b, false)
				if got := f.events(ReasonGangRolledBack); len(got) != 1 {
					t.Fatalf("one rollback, one event on the gang's object; got %v", got)
				}
				f.wantCode("PreEnqueue during the backoff", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
				f.now = f.now.Add(11 * time.Second)
				f.wantCode("PreEnqueue after the backoff", f.preEnqueue(a), fwk.Success)
				f.cycle(a, "n1")
				f.cycle(b, "n2")
				f.wantCode("c admits the next attempt", f.cycle(c, "n3"), fwk.Success)
			})
			t.Run("object missing, then created", func(t *testing.T) {
				f := newFlow(t)
				src.serve(f)
				a, b := src.member("a", "job"), src.member("b", "job")
				f.add(a, b)
				f.wantCode("PreEnqueue without the object", f.preEnqueue(a), fwk.UnschedulableAndUnresolvable)
				if got := f.events(src.missing); len(got) != 1 {
					t.Fatalf("%s events: %v", src.missing, got)
				}
				src.create(f, "job", 2)
				if got := f.activator.take(); len(got) != 2 {
					t.Fatalf("the object's arrival activated %v, want both members", got)
				}
				f.wantCode("PreEnqueue", f.preEnqueue(a), fwk.Success)
				f.wantCode("a waits", f.cycle(a, "n1"), fwk.Wait)
				f.wantCode("b admits the gang", f.cycle(b, "n2"), fwk.Success)
			})
			t.Run("object deleted under waiting members: rejected, no backoff", func(t *testing.T) {
				f := newFlow(t)
				src.create(f, "job", 3)
				a, b, c := src.member("a", "job"), src.member("b", "job"), src.member("c", "job")
				f.add(a, b, c)
				f.cycle(a, "n1")
				f.cycle(b, "n2")
				src.remove(f, "job")
				f.wantCode("a rejected", f.outcome(a), fwk.Unschedulable)
				f.wantCode("b rejected", f.outcome(b), fwk.Unschedulable)
				f.finish(a, false)
				f.finish(b, false)
				src.create(f, "job", 3)
				f.wantCode("no backoff: the gang did not fail", f.preEnqueue(a), fwk.Success)
			})
			t.Run("member deleted while reserved: rollback, the replacement completes", func(t *testing.T) {
				f := newFlow(t)
				src.create(f, "job", 2)
				a, b := src.member("a", "job"), src.member("b", "job")
				f.add(a, b)
				f.wantCode("a waits", f.cycle(a, "n1"), fwk.Wait)
				f.remove(a)
				// The scheduler rejects a deleted pod that waits at Permit.
				f.fh.GetWaitingPod(a.UID).Reject("", "deleted")
				f.wantCode("a rejected with its deletion", f.outcome(a), fwk.Unschedulable)
				f.finish(a, false)
				if c := f.counts(b); c != (gang.Counts{Present: 1}) {
					t.Fatalf("counts after the deletion: %+v", c)
				}
				f.wantCode("b waits for a replacement", f.preEnqueue(b), fwk.UnschedulableAndUnresolvable)
				a2 := src.member("a2", "job")
				f.add(a2)
				f.now = f.now.Add(11 * time.Second) // the failed attempt's backoff
				f.wantCode("b waits", f.cycle(b, "n2"), fwk.Wait)
				f.wantCode("a2 admits the gang", f.cycle(a2, "n1"), fwk.Success)
			})
		})
	}
}
