package gangctl

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// topologyOf maps each podGroup of the named Workload that has a topology
// constraint to it.
func topologyOf(snap *snapshot, name string) map[string]*workloadref.Topology {
	out := map[string]*workloadref.Topology{}
	for i := range snap.workloads.Native {
		if w := &snap.workloads.Native[i]; w.Name == name {
			for _, g := range w.Spec.PodGroups {
				if t := workloadref.PodGroupTopology(w, nil); !t.IsZero() {
					out[g.Name] = t
				}
			}
		}
	}
	for i := range snap.workloads.Portable {
		if w := &snap.workloads.Portable[i]; w.Name == name {
			for j := range w.Spec.PodGroups {
				if t := workloadref.PodGroupTopology(w, &w.Spec.PodGroups[j]); !t.IsZero() {
					out[w.Spec.PodGroups[j].Name] = t
				}
			}
		}
	}
	return out
}

// readPlacements fills the snapshot's placement lines for the described
// Workload: the domain the bound members of each gang with a topology
// constraint are in, from the labels of their nodes.
func readPlacements(ctx context.Context, c Clients, snap *snapshot, name string) error {
	constraints := topologyOf(snap, name)
	nodes := map[string]*v1.Node{}
	for _, row := range snap.gangs {
		t := constraints[row.Key.PodGroup]
		if t == nil {
			continue
		}
		var bound []*v1.Node
		for i := range snap.pods {
			pod := &snap.pods[i]
			if key, _ := gang.KeyOf(pod); key != row.Key || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
				continue
			}
			node, ok := nodes[pod.Spec.NodeName]
			if !ok {
				var err error
				if node, err = c.Kube.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{}); err != nil {
					return fmt.Errorf("reading node %s of pod %s: %w", pod.Spec.NodeName, pod.Name, err)
				}
				nodes[pod.Spec.NodeName] = node
			}
			bound = append(bound, node)
		}
		snap.placements = append(snap.placements, fmt.Sprintf("  %s: %s", row.Key, domainOf(t, bound)))
	}
	return nil
}

// domainOf says where the bound members are: inside one domain of the
// narrowest key they share, or across the domains of the required key.
func domainOf(t *workloadref.Topology, bound []*v1.Node) string {
	if len(bound) == 0 {
		return "no member bound yet"
	}
	keys := append([]string(nil), t.Preferred...)
	if t.Required != "" {
		keys = append(keys, t.Required)
	}
	for _, key := range keys {
		value, shared := bound[0].Labels[key]
		for _, n := range bound[1:] {
			shared = shared && n.Labels[key] == value
		}
		if shared {
			return fmt.Sprintf("%d bound, inside %s=%s", len(bound), key, value)
		}
	}
	return fmt.Sprintf("%d bound, across %s domains", len(bound), strings.Join(keys, " and "))
}
