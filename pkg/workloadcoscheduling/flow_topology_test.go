package workloadcoscheduling

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// racks builds nodes of 1 CPU each: sizes[i] nodes in rack r<i>, racks
// two by two in blocks b0, b1...
func racks(sizes ...int) []*v1.Node {
	var nodes []*v1.Node
	for r, size := range sizes {
		for i := 0; i < size; i++ {
			nodes = append(nodes, st.MakeNode().Name(fmt.Sprintf("r%d-n%d", r, i)).
				Label("rack", fmt.Sprintf("r%d", r)).Label("block", fmt.Sprintf("b%d", r/2)).
				Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "1", v1.ResourcePods: "110"}).Obj())
		}
	}
	return nodes
}

// topologyWorkload creates a Workload with one gang podGroup "workers" and
// the annotations.
func (f *flow) topologyWorkload(name string, minCount int32, annotations map[string]string) {
	w := st.MakeWorkload().Namespace("ns").Name(name).PodGroup(st.MakePodGroup().Name("workers").MinCount(minCount).Obj()).Obj()
	w.Annotations = annotations
	if err := f.informers.Scheduling().V1alpha1().Workloads().Informer().GetStore().Add(w); err != nil {
		f.t.Fatal(err)
	}
	f.pl.workloadAdded(f.logger, w)
}

// cpuPods are the gang's members, asking 1 CPU each.
func cpuPods(workload string, names ...string) []*v1.Pod {
	var pods []*v1.Pod
	for _, name := range names {
		pods = append(pods, gangPod(name, workload, "").Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj())
	}
	return pods
}

// preFilter runs the PreFilter plugins in a fresh cycle.
func (f *flow) preFilter(pod *v1.Pod) (*fwk.PreFilterResult, *fwk.Status) {
	result, status, _ := f.fh.RunPreFilterPlugins(f.ctx, framework.NewCycleState(), pod)
	return result, status
}

func wantDomain(t *testing.T, result *fwk.PreFilterResult, prefix string, n int) {
	t.Helper()
	if result.AllNodes() || result.NodeNames.Len() != n {
		t.Fatalf("PreFilter result %v, want the %d nodes of %s", result, n, prefix)
	}
	for name := range result.NodeNames {
		if !strings.HasPrefix(name, prefix) {
			t.Fatalf("PreFilter result %v, want only nodes of %s", result.NodeNames.UnsortedList(), prefix)
		}
	}
}

// A required rack: the tightest rack with room for the whole gang, chosen
// once for the attempt; told once on the Workload.
func TestFlowTopologyRequiredTightestDomain(t *testing.T) {
	f := newFlow(t, racks(2, 4, 3)...)
	f.topologyWorkload("job", 3, map[string]string{workloadref.TopologyRequiredAnnotation: "rack"})
	pods := cpuPods("job", "a", "b", "c")
	f.add(pods...)
	result, status := f.preFilter(pods[0])
	f.wantCode("a's PreFilter", status, fwk.Success)
	wantDomain(t, result, "r2-", 3)
	key, _ := gang.KeyOf(pods[0])
	chosen, _, _ := f.pl.index.Placement(key)
	for _, pod := range pods[1:] {
		result, _ := f.preFilter(pod)
		wantDomain(t, result, "r2-", 3)
	}
	if again, _, _ := f.pl.index.Placement(key); again != chosen {
		t.Fatalf("the placement was chosen again within the attempt")
	}
	if got := f.events(ReasonTopologyPlaced); len(got) != 1 || !strings.Contains(got[0], "rack=r2") {
		t.Fatalf("placement events %v, want one naming rack=r2", got)
	}
}

// No rack with room: nothing is reserved, the user reads what each rack
// has, and the attempt fails with a backoff.
func TestFlowTopologyRequiredUnfit(t *testing.T) {
	f := newFlow(t, racks(2, 2)...)
	f.topologyWorkload("job", 3, map[string]string{workloadref.TopologyRequiredAnnotation: "rack"})
	pods := cpuPods("job", "a", "b", "c")
	f.add(pods...)
	_, status := f.preFilter(pods[0])
	f.wantCode("a's PreFilter", status, fwk.UnschedulableAndUnresolvable)
	if want := "no rack domain has room for 3 members: rack=r0 2, rack=r1 2"; status.Message() != want {
		t.Fatalf("message %q, want %q", status.Message(), want)
	}
	if got := f.events(ReasonTopologyUnfit); len(got) != 1 {
		t.Fatalf("unfit events %v, want one", got)
	}
	_, s := f.fh.RunPostFilterPlugins(f.ctx, framework.NewCycleState(), pods[0], framework.NewDefaultNodeToStatus())
	f.wantCode("PostFilter", s, fwk.Unschedulable)
	key, _ := gang.KeyOf(pods[0])
	if f.pl.index.BackoffLeft(key, f.now) <= 0 {
		t.Fatalf("a gang no rack can hold does not back off")
	}
}

// Preferred rack, then block: no rack has room, a block does; when the
// attempt in the block fails, the next goes anywhere at once.
func TestFlowTopologyPreferredFallsBack(t *testing.T) {
	f := newFlow(t, racks(2, 2, 1, 1)...)
	f.topologyWorkload("job", 3, map[string]string{workloadref.TopologyPreferredAnnotation: "rack,block"})
	pods := cpuPods("job", "a", "b", "c")
	f.add(pods...)
	result, status := f.preFilter(pods[0])
	f.wantCode("a's PreFilter", status, fwk.Success)
	if result.NodeNames.Len() != 4 || !result.NodeNames.Has("r0-n0") || !result.NodeNames.Has("r1-n1") {
		t.Fatalf("PreFilter result %v, want the 4 nodes of block b0", result)
	}
	got := f.events(ReasonTopologyPlaced)
	if len(got) != 1 || !strings.Contains(got[0], "block=b0") || !strings.Contains(got[0], "no rack domain has room for 3 members") {
		t.Fatalf("placement events %v, want block=b0 and why no rack", got)
	}
	// A member does not fit in the block after all (the snapshot was
	// stale): no preemption, no backoff, the next level.
	_, s := f.fh.RunPostFilterPlugins(f.ctx, framework.NewCycleState(), pods[1], framework.NewDefaultNodeToStatus())
	f.wantCode("PostFilter", s, fwk.Unschedulable)
	key, _ := gang.KeyOf(pods[0])
	if left := f.pl.index.BackoffLeft(key, f.now); left > 0 {
		t.Fatalf("falling back a level waits %v", left)
	}
	result, status = f.preFilter(pods[1])
	f.wantCode("b's PreFilter", status, fwk.Success)
	if !result.AllNodes() {
		t.Fatalf("after the block failed: %v, want every node", result.NodeNames.UnsortedList())
	}
}

// Members already bound pin the domain, even when another is tighter.
func TestFlowTopologyBoundMembersPinTheDomain(t *testing.T) {
	f := newFlow(t, racks(2, 3)...)
	f.topologyWorkload("job", 2, map[string]string{workloadref.TopologyRequiredAnnotation: "rack"})
	pods := cpuPods("job", "a", "b")
	pods[0].Spec.NodeName = "r1-n0"
	f.add(pods...)
	result, status := f.preFilter(pods[1])
	f.wantCode("b's PreFilter", status, fwk.Success)
	wantDomain(t, result, "r1-", 3)
}

// An invalid annotation is reported on the Workload and ignored: the gang
// goes anywhere.
func TestFlowTopologyInvalidAnnotationIgnored(t *testing.T) {
	f := newFlow(t, racks(2)...)
	f.topologyWorkload("job", 2, map[string]string{workloadref.TopologyRequiredAnnotation: "not a key!"})
	pods := cpuPods("job", "a", "b")
	f.add(pods...)
	if got := f.events(ReasonInvalidTopology); len(got) != 1 || !strings.Contains(got[0], workloadref.TopologyRequiredAnnotation) {
		t.Fatalf("events %v, want one naming the annotation", got)
	}
	result, status := f.preFilter(pods[0])
	f.wantCode("a's PreFilter", status, fwk.Success)
	if !result.AllNodes() {
		t.Fatalf("PreFilter result %v, want every node", result.NodeNames.UnsortedList())
	}
}

// BenchmarkChoosePlacement is the choice of a domain, once per attempt, for a
// gang of 8 with a required rack and a preferred block, on nodes in racks of
// 20, every node fitting 4 members. The flow's profile has no Filter
// plugins: this is the plugin's own cost and the framework's per-node call,
// not the filters a real profile runs (TestPerformance measures those).
func BenchmarkChoosePlacement(b *testing.B) {
	for _, nodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("%d nodes", nodes), func(b *testing.B) {
			sizes := make([]int, nodes/20)
			for i := range sizes {
				sizes[i] = 20
			}
			all := racks(sizes...)
			for _, n := range all {
				n.Status.Capacity[v1.ResourceCPU] = resource.MustParse("4")
				n.Status.Allocatable = n.Status.Capacity
			}
			f := newFlow(b, all...)
			f.topologyWorkload("job", 8, map[string]string{
				workloadref.TopologyRequiredAnnotation: "block", workloadref.TopologyPreferredAnnotation: "rack",
			})
			pods := cpuPods("job", "a", "b", "c", "d", "e", "f", "g", "h")
			f.add(pods...)
			m, _ := f.pl.membershipOf(pods[0])
			// The scheduler's own verbosity: the test logger's would have
			// the framework name a logger per Filter call.
			ctx := klog.NewContext(context.Background(), klog.Background())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if p := f.pl.choosePlacement(ctx, pods[0], m, 0); p.Domain == "" {
					b.Fatalf("no domain: %+v", p)
				}
			}
		})
	}
}

// The queue is ahead of the plugin's handler: the members are in the
// informer's store, not yet in the index. The first member's choice holds
// for the second all the same (it was once lost, and the second member
// chose another rack).
func TestFlowTopologyChoiceBeforeTheHandler(t *testing.T) {
	f := newFlow(t, racks(2, 2)...)
	f.topologyWorkload("job", 2, map[string]string{workloadref.TopologyRequiredAnnotation: "rack"})
	pods := cpuPods("job", "a", "b")
	for _, pod := range pods {
		if err := f.informers.Core().V1().Pods().Informer().GetStore().Add(pod); err != nil {
			t.Fatal(err)
		}
	}
	first, status := f.preFilter(pods[0])
	f.wantCode("a's PreFilter", status, fwk.Success)
	key, _ := gang.KeyOf(pods[0])
	if p, _, _ := f.pl.index.Placement(key); p == nil {
		t.Fatalf("a's choice was not recorded for its attempt")
	}
	second, status := f.preFilter(pods[1])
	f.wantCode("b's PreFilter", status, fwk.Success)
	if !first.NodeNames.Equal(second.NodeNames) {
		t.Fatalf("a got %v, b %v: one attempt, two domains", first.NodeNames.UnsortedList(), second.NodeNames.UnsortedList())
	}
}
