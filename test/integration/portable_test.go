package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// TestPortableMode is the spec on an API server without the alpha Workload
// API (the GenericWorkload gate off, as on managed control planes): portable
// Workloads (the CRD) and pods that reference them by annotations. Every
// reference case and every lifecycle case runs as it does against the
// built-in API.
func TestPortableMode(t *testing.T) {
	c := startCluster(t)
	installCRDs(t, c)
	c.portable = true
	c.startScheduler(t)
	for _, tc := range referenceCases {
		if strings.HasPrefix(tc.name, "bad plugin args") {
			continue // not about references
		}
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
	// The gang lifecycle through portable Workloads: with TestWorkloadCoscheduling
	// and TestPodGroups, one table, three sources.
	for _, tc := range lifecycleCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
	t.Run("an invalid reference waits with an event naming the annotation", func(t *testing.T) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "2")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 1})
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "Workers_1"})
		note := c.waitEvent(t, ns, "w-0", "InvalidWorkloadReference", `pod-group="Workers_1"`)
		t.Logf("event: %s", note)
		c.stayUnbound(t, ns, 2*time.Second, "w-0")
	})
	t.Run("a pod whose annotations move it to another gang leaves its old one", func(t *testing.T) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createWorkload(t, ns, "a", podGroup{name: "workers", minCount: 2})
		c.createWorkload(t, ns, "b", podGroup{name: "workers", minCount: 2})
		c.createPod(t, ns, podSpec{name: "mover", workload: "a", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "b-0", workload: "b", podGroup: "workers"})
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"b"}}}`, gang.WorkloadAnnotation)
		if _, err := c.client.CoreV1().Pods(ns).Patch(context.Background(), "mover", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		// b has its two members; a has none left, and its new member waits.
		c.waitBound(t, ns, 30*time.Second, "mover", "b-0")
		c.createPod(t, ns, podSpec{name: "a-0", workload: "a", podGroup: "workers"})
		c.waitEvent(t, ns, "a-0", "WaitingForGangMembers", "1/2 present")
		c.stayUnbound(t, ns, 2*time.Second, "a-0")
	})
}

// TestNativeAndPortable runs both kinds of Workload on one server: gangs of
// the same names are separate, and a pod with both references follows
// spec.workloadRef.
func TestNativeAndPortable(t *testing.T) {
	c := startCluster(t, workloadAPIFlags...)
	installCRDs(t, c)
	c.startScheduler(t)
	ns := c.namespace(t)
	c.addNodes(t, ns, 5, "1")
	// The same names in both APIs, with different minCounts.
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createPortableWorkload(t, ns, "job", nil, podGroup{name: "workers", minCount: 3})

	c.createPod(t, ns, podSpec{name: "native-0", workload: "job", podGroup: "workers"})
	c.createPod(t, ns, podSpec{name: "portable-0", workload: "job", podGroup: "workers", portable: true})
	c.createPod(t, ns, podSpec{name: "portable-1", workload: "job", podGroup: "workers", portable: true})
	// One member each: the native gang (2) and the portable one (3) wait.
	c.stayUnbound(t, ns, 2*time.Second, "native-0", "portable-0", "portable-1")
	// A pod with both references completes the native gang, not the portable one.
	c.createPod(t, ns, podSpec{name: "native-1", workload: "job", podGroup: "workers", both: true})
	c.waitBound(t, ns, 30*time.Second, "native-0", "native-1")
	c.stayUnbound(t, ns, 2*time.Second, "portable-0", "portable-1")
	c.createPod(t, ns, podSpec{name: "portable-2", workload: "job", podGroup: "workers", portable: true})
	c.waitBound(t, ns, 30*time.Second, "native-0", "native-1", "portable-0", "portable-1", "portable-2")

	// kubectl gang shows both gangs.
	out := c.kubectlGang(t, ns, "list", "-o", "json")
	if !strings.Contains(out, `"workloadAPI": "scheduling.workload-coscheduling.io/v1alpha1"`) ||
		!strings.Contains(out, `"workloadAPI": "scheduling.k8s.io/v1alpha1"`) || strings.Count(out, `"workload": "job"`) != 2 {
		t.Errorf("kubectl gang list shows not both gangs:\n%s", out)
	}
}

// TestCRDInstalledLater starts the scheduler before the CRD exists: portable
// pods wait saying so, and are scheduled once the CRD is installed and their
// Workload created, without a restart.
func TestCRDInstalledLater(t *testing.T) {
	c := startCluster(t)
	c.portable = true
	c.startScheduler(t)
	ns := c.namespace(t)
	c.addNodes(t, ns, 2, "1")
	c.createGang(t, ns, "job", "workers", "", "w", 2, "1")
	note := c.waitEvent(t, ns, "w-0", "PortableWorkloadAPINotServed", "manifests/crds")
	t.Logf("event: %s", note)

	installCRDs(t, c)
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	// The plugin asks discovery again every 10s.
	c.waitBound(t, ns, 45*time.Second, "w-0", "w-1")
}
