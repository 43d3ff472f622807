package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// rackLabel puts the cluster's nodes in racks for the topology feature; it
// is taken off again in its teardown.
const rackLabel = "e2e.workload-coscheduling.io/rack"

func TestGangInsideOneRack(t *testing.T) {
	f := features.New("a gang that must share a rack").
		Setup(withNamespace("topology")).
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			// The first node alone in r0, the others in r1.
			for i, node := range schedulableNodeNames(ctx, t, clientset(t, cfg)) {
				rack := "r1"
				if i == 0 {
					rack = "r0"
				}
				labelNode(ctx, t, clientset(t, cfg), node, &rack)
			}
			return ctx
		}).
		Assess("lands in the only rack with room for all its members, and runs", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			nodes, perNode := schedulableNodes(ctx, t, c)
			if nodes < 3 {
				t.Skipf("%d schedulable nodes: the case needs a rack of 2 and one of 1", nodes)
			}
			// One member per node: anywhere, the gang would also use r0.
			size := int32(nodes - 1)
			cpu := resource.NewMilliQuantity(perNode*6/10, resource.DecimalSI).String()
			w := gangWorkload("allreduce", "ranks", size)
			w.Annotations = map[string]string{"workload-coscheduling.io/topology-required": rackLabel}
			create(ctx, t, c, ns, w)
			create(ctx, t, c, ns, gangJob("allreduce", "allreduce", "ranks", "", size, cpu))
			waitJobComplete(ctx, t, c, ns, "allreduce", size)
			for _, p := range jobPods(ctx, t, c, ns, "allreduce") {
				node, err := c.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if rack := node.Labels[rackLabel]; rack != "r1" {
					t.Errorf("pod %s ran on %s in rack %q, want r1", p.Name, node.Name, rack)
				}
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			for _, node := range schedulableNodeNames(ctx, t, clientset(t, cfg)) {
				labelNode(ctx, t, clientset(t, cfg), node, nil)
			}
			return ctx
		}).
		Teardown(deleteNamespace).Feature()
	testenv.Test(t, f)
}

func schedulableNodeNames(ctx context.Context, t *testing.T, c kubernetes.Interface) []string {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		if !n.Spec.Unschedulable && len(n.Spec.Taints) == 0 {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names
}

// labelNode sets the node's rack label, or removes it when rack is nil.
func labelNode(ctx context.Context, t *testing.T, c kubernetes.Interface, node string, rack *string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{rackLabel: rack}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(fmt.Errorf("labelling node %s: %w", node, err))
	}
}
