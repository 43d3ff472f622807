package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// holdFinalizer keeps a deleted test pod terminating until it is removed.
const holdFinalizer = "test.workload-coscheduling.io/hold"

// attemptCases are the gang-attempt state machine against the real API
// server: members that terminate, pods deleted while their gang forms, a
// second profile.
var attemptCases = []clusterCase{
	{"replacements of a gang whose members are terminating bind nothing until those are gone, then all", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 6, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 4})
		mon := c.monitorGangs(t, ns)
		// The old members carry a finalizer, as pods do while something (a
		// kubelet stopping containers, a controller) holds their deletion.
		for i := 0; i < 4; i++ {
			pod := c.podObject(ns, podSpec{name: fmt.Sprintf("old-%d", i), workload: "job", podGroup: "workers"})
			pod.Finalizers = []string{holdFinalizer}
			if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		c.waitBound(t, ns, 30*time.Second, "old-0", "old-1", "old-2", "old-3")
		for i := 0; i < 4; i++ {
			if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), fmt.Sprintf("old-%d", i),
				metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
		}
		c.createGang(t, ns, "job", "workers", "", "new", 4, "1")
		// Two nodes are free: the replacements try, roll back, and back off;
		// not one of them binds while the old gang holds four nodes.
		c.waitEvent(t, ns, "job", "GangRolledBack", "does not fit")
		c.stayUnbound(t, ns, 12*time.Second, "new-0", "new-1", "new-2", "new-3")
		for i := 0; i < 4; i++ {
			patch := []byte(`{"metadata":{"finalizers":null}}`)
			if _, err := c.client.CoreV1().Pods(ns).Patch(context.Background(), fmt.Sprintf("old-%d", i), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		c.waitBound(t, ns, 30*time.Second, "new-0", "new-1", "new-2", "new-3")
		mon.check(t)
	}},
	{"pods deleted while their gangs form leave no gang behind", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		before := scrape(t)
		c.addNodes(t, ns, 3, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		// Gangs of two on three nodes, each deleted at once: members are
		// deleted in every phase of their scheduling cycle, at Permit, bound.
		for g := 0; g < 12; g++ {
			name := fmt.Sprintf("g%d", g)
			c.createGang(t, ns, "job", "workers", name, name, 2, "1")
			time.Sleep(time.Duration(g%4) * 25 * time.Millisecond)
			for i := 0; i < 2; i++ {
				c.deletePod(t, ns, fmt.Sprintf("%s-%d", name, i))
			}
		}
		waitMetric(t, "the index to forget every gang", func(m metricSet) bool {
			return m[`workload_coscheduling_gangs_tracked`] <= before[`workload_coscheduling_gangs_tracked`]
		})
		// The nodes are free again: a last gang binds whole.
		c.createGang(t, ns, "job", "workers", "last", "last", 2, "1")
		c.waitBound(t, ns, 30*time.Second, "last-0", "last-1")
	}},
	{"a configuration with two profiles of the plugin starts, and each profile places its gangs", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 4, "1")
		profiles := []string{ns[:20] + "-a", ns[:20] + "-b"}
		c.runScheduler(t, c.schedulerConfig(t, func(cfg map[string]interface{}) {
			shipped := cfg["profiles"].([]interface{})[0].(map[string]interface{})
			var two []interface{}
			for _, name := range profiles {
				p := map[string]interface{}{}
				for k, v := range shipped {
					p[k] = v
				}
				p["schedulerName"] = name
				two = append(two, p)
			}
			cfg["profiles"] = two
		}))
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		for i, profile := range profiles {
			for m := 0; m < 2; m++ {
				c.createPod(t, ns, podSpec{name: fmt.Sprintf("p%d-%d", i, m), workload: "job", podGroup: "workers",
					replicaKey: fmt.Sprint(i), scheduler: profile})
			}
		}
		c.waitBound(t, ns, 30*time.Second, "p0-0", "p0-1", "p1-0", "p1-1")
	}},
}
