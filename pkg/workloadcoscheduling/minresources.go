package workloadcoscheduling

import (
	"context"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// ReasonMinResourcesUnfit: a PodGroup's minResources exceed the cluster's
// free capacity, so its gang is not tried; on the PodGroup.
const ReasonMinResourcesUnfit = "GangMinResourcesUnfit"

// checkMinResources is Coscheduling's pre-check of a PodGroup's
// minResources, made once per attempt: at the PreFilter of the attempt's
// first member, before anything is reserved. Free capacity is what nodes
// have unrequested plus what pods of lower priority than the gang hold
// (the gang may preempt them), so the check never turns away a gang that
// could fit. A gang that cannot is rejected, and backs off, with an event
// naming the resources short.
func (pl *WorkloadCoscheduling) checkMinResources(ctx context.Context, pod *v1.Pod, m membership) *fwk.Status {
	if len(m.policy.MinResources) == 0 || pl.index.Counts(m.key).Placed() > 0 {
		return nil
	}
	nodes, err := pl.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return fwk.AsStatus(err)
	}
	short := shortfall(m.policy.MinResources, freeCapacity(nodes, corev1helpers.PodPriority(pod)))
	if len(short) == 0 {
		return nil
	}
	why := fmt.Sprintf("gang %s not tried: its minResources exceed the cluster's free capacity: %s", m.key, strings.Join(short, "; "))
	e := pl.index.Fail(m.key, pl.index.Attempt(m.key), gang.OutcomeMinResources, pl.now())
	if e.RolledBack {
		why = pl.carryOut(ctx, m.key, e, why)
	}
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, why)
}

// capacity is an amount per resource: milli-CPU for cpu, units otherwise.
type capacity map[v1.ResourceName]int64

func (c capacity) add(r fwk.Resource, sign int64) {
	c[v1.ResourceCPU] += sign * r.GetMilliCPU()
	c[v1.ResourceMemory] += sign * r.GetMemory()
	c[v1.ResourceEphemeralStorage] += sign * r.GetEphemeralStorage()
	for name, v := range r.GetScalarResources() {
		c[name] += sign * v
	}
}

// freeCapacity sums, over the nodes, what is not requested and what pods
// of a priority below priority request.
func freeCapacity(nodes []fwk.NodeInfo, priority int32) capacity {
	free := capacity{}
	for _, n := range nodes {
		if n.Node() == nil {
			continue
		}
		free.add(n.GetAllocatable(), 1)
		free.add(n.GetRequested(), -1)
		pods := n.GetPods()
		free[v1.ResourcePods] += int64(n.GetAllocatable().GetAllowedPodNumber() - len(pods))
		for _, p := range pods {
			if corev1helpers.PodPriority(p.GetPod()) < priority {
				free.add(p.CalculateResource().Resource, 1)
				free[v1.ResourcePods]++
			}
		}
	}
	return free
}

// shortfall lists, sorted, each resource of want above free: "cpu: 12
// wanted, 8 free".
func shortfall(want v1.ResourceList, free capacity) []string {
	var short []string
	for name, q := range want {
		need := q.Value()
		if name == v1.ResourceCPU {
			need = q.MilliValue()
		}
		if have := free[name]; need > have {
			short = append(short, fmt.Sprintf("%s: %s wanted, %s free", name, q.String(), quantity(name, have).String()))
		}
	}
	sort.Strings(short)
	return short
}

func quantity(name v1.ResourceName, v int64) *resource.Quantity {
	switch name {
	case v1.ResourceCPU:
		return resource.NewMilliQuantity(v, resource.DecimalSI)
	case v1.ResourceMemory, v1.ResourceEphemeralStorage:
		return resource.NewQuantity(v, resource.BinarySI)
	}
	return resource.NewQuantity(v, resource.DecimalSI)
}
