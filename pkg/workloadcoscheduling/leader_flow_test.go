package workloadcoscheduling

import (
	"slices"
	"testing"
	"time"

	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// A standby's queue judges pods too, and its handlers see every Workload:
// it tells the user nothing. Once it leads, the pods it turned away are
// judged again and told, and the Workloads' invalid annotations reported.
func TestFlowStandbyTellsNothingUntilItLeads(t *testing.T) {
	f := newFlowOf(t, false)
	pod := gangPod("a", "missing", "").Obj()
	f.add(pod)
	f.wantCode("PreEnqueue without the Workload", f.preEnqueue(pod), fwk.UnschedulableAndUnresolvable)
	w := st.MakeWorkload().Namespace("ns").Name("job").PodGroup(st.MakePodGroup().Name("workers").MinCount(2).Obj()).Obj()
	w.Annotations = map[string]string{gang.PermitWaitingTimeAnnotation: "soon"}
	if err := f.informers.Scheduling().V1alpha1().Workloads().Informer().GetStore().Add(w); err != nil {
		t.Fatal(err)
	}
	f.pl.workloadAdded(f.logger, w)
	if got := append(f.events("WorkloadNotFound"), f.events(ReasonInvalidPermitWaitingTime)...); len(got) != 0 {
		t.Fatalf("a standby told: %v", got)
	}

	f.pl.markLeading()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(f.activator.take(), "ns/a") {
		if time.Now().After(deadline) {
			t.Fatalf("the pod turned away by the standby was not judged again when it led")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// (f.events drains every event: one reason at a time, in order.)
	if got := f.events(ReasonInvalidPermitWaitingTime); len(got) != 1 {
		t.Fatalf("%s events once leading: %v", ReasonInvalidPermitWaitingTime, got)
	}
	f.wantCode("PreEnqueue, leading", f.preEnqueue(pod), fwk.UnschedulableAndUnresolvable)
	if got := f.events("WorkloadNotFound"); len(got) != 1 {
		t.Fatalf("WorkloadNotFound events once leading: %v", got)
	}
}
