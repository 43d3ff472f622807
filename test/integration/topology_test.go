package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// Node labels of the topology cases: the namespace's nodes in racks, racks
// two by two in blocks.
const (
	rackLabel  = "test.workload-coscheduling.io/rack"
	blockLabel = "test.workload-coscheduling.io/block"
)

// topologyCases are topology-aware placement against the real API server,
// with the invariant watcher in each.
var topologyCases = []clusterCase{
	{"required: the only rack with room gets the whole gang", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 2, 3, 2)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyRequiredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "job", "workers", "", "w", 3, "1")
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
		c.wantOneDomain(t, ns, rackLabel, "r1", "w-0", "w-1", "w-2")
		c.waitEvent(t, ns, "job", "GangTopologyPlaced", rackLabel+"=r1")
		out := c.kubectlGang(t, ns, "describe", "job")
		for _, want := range []string{"workers\tgang, minCount 3, topology required " + rackLabel, "NS/job/workers: 3 bound, inside " + rackLabel + "=r1"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl gang describe lacks %q:\n%s", want, out)
			}
		}
	}},
	{"required: no rack has room, nothing binds; when one frees, the gang binds there whole", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 2, 3)
		// A pod the gang may not preempt (same priority) holds a node of r1,
		// bound there by spec.nodeName.
		holder := c.podObject(ns, podSpec{name: "holder"})
		holder.Spec.NodeName = ns + "-r1-0"
		if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), holder, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyRequiredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "job", "workers", "", "w", 3, "1")
		note := c.waitEvent(t, ns, "job", "GangTopologyUnfit", "no "+rackLabel+" domain has room for 3 members")
		t.Logf("event: %s", note)
		c.stayUnbound(t, ns, 3*time.Second, "w-0", "w-1", "w-2")
		c.deletePod(t, ns, "holder")
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
		c.wantOneDomain(t, ns, rackLabel, "", "w-0", "w-1", "w-2")
	}},
	{"required: two replica keys each get a rack of their own", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 2, 2)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyRequiredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 2})
		for _, replica := range []string{"a", "b"} {
			for i := 0; i < 2; i++ {
				c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", replica, i), workload: "job", podGroup: "workers", replicaKey: replica})
			}
		}
		c.waitBound(t, ns, 30*time.Second, "a-0", "a-1", "b-0", "b-1")
		c.wantOneDomain(t, ns, rackLabel, "", "a-0", "a-1")
		c.wantOneDomain(t, ns, rackLabel, "", "b-0", "b-1")
	}},
	{"preferred: a rack with room is used", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 3, 3)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyPreferredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "job", "workers", "", "w", 3, "1")
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
		c.wantOneDomain(t, ns, rackLabel, "", "w-0", "w-1", "w-2")
	}},
	{"preferred: when no rack has room the gang binds across racks", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 2, 2)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyPreferredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "job", "workers", "", "w", 3, "1")
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
		c.waitEvent(t, ns, "job", "GangTopologyPlaced", "across domains")
	}},
	{"preferred: when the members do not fit the rack chosen, the next attempt goes anywhere at once", func(t *testing.T, c *cluster) {
		// r0: three nodes of 1 CPU; r1, r2 and r3: a node of 2 CPUs each.
		// The rack is chosen for the member tried first, w-0 (1 CPU): r0,
		// the only one with room for three such members. Its siblings ask
		// 2 CPUs, which only r1, r2 and r3 have.
		ns := c.topologyNamespace(t, 3)
		for r := 1; r <= 3; r++ {
			labels := map[string]string{rackLabel: fmt.Sprintf("r%d", r), blockLabel: "b9"}
			if err := c.createLabelledNode(ns, fmt.Sprintf("%s-r%d-0", ns, r), "2", labels); err != nil {
				t.Fatal(err)
			}
		}
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyPreferredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 3})
		c.createPod(t, ns, podSpec{name: "w-1", cpu: "2", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-2", cpu: "2", workload: "job", podGroup: "workers"})
		start := time.Now()
		c.createPod(t, ns, podSpec{name: "w-0", cpu: "1", workload: "job", podGroup: "workers"})
		// Well within the gang's 10 s backoff: falling back waits for none.
		c.waitBound(t, ns, 5*time.Second, "w-0", "w-1", "w-2")
		t.Logf("bound %v after the last member was created", time.Since(start).Round(10*time.Millisecond))
		c.waitEvent(t, ns, "job", "GangTopologyPlaced", rackLabel+"=r0")
	}},
	{"preferred rack, then block: falls back to one block", func(t *testing.T, c *cluster) {
		// Blocks b0 (r0, r1: 4 nodes) and b1 (r2, r3: 2 nodes).
		ns := c.topologyNamespace(t, 2, 2, 1, 1)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyPreferredAnnotation: rackLabel + "," + blockLabel},
			podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "job", "workers", "", "w", 3, "1")
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
		c.wantOneDomain(t, ns, blockLabel, "b0", "w-0", "w-1", "w-2")
		c.waitEvent(t, ns, "job", "GangTopologyPlaced", blockLabel+"=b0")
	}},
	{"a gang larger than any rack stays pending with a clear event; other pods keep scheduling", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 3, 3)
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{gang.TopologyRequiredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 5})
		c.createGang(t, ns, "job", "workers", "", "w", 5, "1")
		c.waitEvent(t, ns, "job", "GangTopologyUnfit", "no "+rackLabel+" domain has room for 5 members: "+rackLabel+"=r0 3, "+rackLabel+"=r1 3")
		c.createPod(t, ns, podSpec{name: "plain"})
		c.waitBound(t, ns, 30*time.Second, "plain")
		c.stayUnbound(t, ns, 2*time.Second, "w-0", "w-1", "w-2", "w-3", "w-4")
	}},
	{"a high-priority gang with a required rack preempts inside one rack", func(t *testing.T, c *cluster) {
		ns := c.topologyNamespace(t, 2, 2)
		c.ensurePriorityClasses(t)
		c.reapTerminating(t, ns)
		// The cheapest victims, one per rack, would free two nodes in two
		// racks: the pods of one rack are evicted instead.
		placed := map[string]string{"lowest-r0": "r0-0", "low-r0": "r0-1", "lowest-r1": "r1-0", "low-r1": "r1-1"}
		var victims []string
		for name, node := range placed {
			class := lowPriority
			if strings.HasPrefix(name, "lowest") {
				class = lowestPriority
			}
			pod := c.podObject(ns, podSpec{name: name, priorityClass: class})
			pod.Spec.NodeName = ns + "-" + node
			if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			victims = append(victims, name)
		}
		c.createWorkloadAnnotated(t, ns, "high", map[string]string{gang.TopologyRequiredAnnotation: rackLabel}, podGroup{name: "workers", minCount: 2})
		c.createPriorityGang(t, ns, "high", "h", 2, highPriority)
		c.waitAmongBound(t, ns, 30*time.Second, "h-0", "h-1")
		c.wantOneDomain(t, ns, rackLabel, "", "h-0", "h-1")
		alive := c.aliveOf(t, ns, victims...)
		if len(alive) != 2 || alive[0][len(alive[0])-2:] != alive[1][len(alive[1])-2:] {
			t.Fatalf("pods left: %v, want the 2 of one rack", alive)
		}
		c.waitEvent(t, ns, "high", "GangPreempting", "evicts")
	}},
}

// topologyNamespace is a namespace whose nodes (1 CPU each) are in racks
// r0, r1... of the given sizes, racks two by two in blocks b0, b1..., with
// the invariant watcher.
func (c *cluster) topologyNamespace(t *testing.T, rackSizes ...int) string {
	t.Helper()
	ns := c.namespace(t)
	for r, size := range rackSizes {
		for i := 0; i < size; i++ {
			labels := map[string]string{rackLabel: fmt.Sprintf("r%d", r), blockLabel: fmt.Sprintf("b%d", r/2)}
			if err := c.createLabelledNode(ns, fmt.Sprintf("%s-r%d-%d", ns, r, i), "1", labels); err != nil {
				t.Fatal(err)
			}
		}
	}
	inv := c.watchInvariants(t, ns)
	t.Cleanup(func() { inv.check(t) })
	return ns
}

// wantOneDomain fails unless the named pods' nodes share one value of the
// label key (value, when not empty).
func (c *cluster) wantOneDomain(t *testing.T, ns, key, value string, names ...string) {
	t.Helper()
	bound := c.boundPods(t, ns)
	seen := map[string][]string{}
	for _, name := range names {
		node, err := c.client.CoreV1().Nodes().Get(context.Background(), bound[name], metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s on node %q: %v", name, bound[name], err)
		}
		v := node.Labels[key]
		seen[v] = append(seen[v], name+"@"+node.Name)
	}
	if len(seen) != 1 || (value != "" && seen[value] == nil) {
		var parts []string
		for v, pods := range seen {
			parts = append(parts, fmt.Sprintf("%s=%s: %v", key, v, pods))
		}
		want := "one domain"
		if value != "" {
			want = key + "=" + value
		}
		t.Fatalf("pods spread over %s, want %s", strings.Join(parts, "; "), want)
	}
}
