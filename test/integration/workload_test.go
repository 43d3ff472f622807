package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/kubernetes/pkg/features"
)

// clusterCase is one test case run against the shared API server and scheduler.
type clusterCase struct {
	name string
	run  func(t *testing.T, c *cluster)
}

// TestWorkloadCoscheduling runs every case against one API server that serves
// the Workload API, with one scheduler from the shipped configuration.
func TestWorkloadCoscheduling(t *testing.T) {
	c := startCluster(t, workloadAPIFlags...)
	c.startScheduler(t)
	for _, cases := range [][]clusterCase{referenceCases, lifecycleCases, attemptCases, preemptionCases, topologyCases, metricsCases, eventCases, gangctlCases} {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
		}
	}
}

// referenceCases are the behaviours of the Workload reference (the spec).
var referenceCases = []clusterCase{
	{"pod without workloadRef is scheduled as usual", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "2")
		c.createPod(t, ns, podSpec{name: "plain"})
		c.waitBound(t, ns, 30*time.Second, "plain")
	}},
	{"basic podGroup only groups its pods", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "4")
		c.createWorkload(t, ns, "job", podGroup{name: "workers"})
		// One pod of a basic group schedules on its own; nothing waits for others.
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-0")
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1")
	}},
	{"missing Workload keeps the pod pending until it is created", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "4")
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		note := c.waitEvent(t, ns, "w-0", "WorkloadNotFound", `Workload "job"`)
		t.Logf("event: %s", note)
		c.stayUnbound(t, ns, 2*time.Second, "w-0")

		c.createWorkload(t, ns, "job", podGroup{name: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-0")
	}},
	{"missing podGroup keeps the pod pending until the Workload is recreated with it", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "4")
		c.createWorkload(t, ns, "job", podGroup{name: "driver"})
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		note := c.waitEvent(t, ns, "w-0", "PodGroupNotFound", `podGroup "workers"`)
		t.Logf("event: %s", note)
		c.stayUnbound(t, ns, 2*time.Second, "w-0")

		// podGroups are immutable: the user deletes and recreates the Workload.
		c.deleteWorkload(t, ns, "job")
		c.createWorkload(t, ns, "job", podGroup{name: "driver"}, podGroup{name: "workers", minCount: 1})
		c.waitBound(t, ns, 30*time.Second, "w-0")
	}},
	{"gang waits for minCount members then binds together", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 3, "2")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3})
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.waitEvent(t, ns, "job", "WaitingForGangMembers", "/3 present")
		c.stayUnbound(t, ns, 3*time.Second, "w-0", "w-1")

		c.createPod(t, ns, podSpec{name: "w-2", workload: "job", podGroup: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1", "w-2")
	}},
	{"replica keys are independent gangs: with room for one, exactly one binds", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		// Room for two pods of 1 CPU: one gang of two, never one member of each.
		c.addNodes(t, ns, 1, "2")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		for _, p := range []podSpec{
			{name: "a-0", replicaKey: "0"}, {name: "a-1", replicaKey: "0"},
			{name: "b-0", replicaKey: "1"}, {name: "b-1", replicaKey: "1"},
		} {
			p.workload, p.podGroup = "job", "workers"
			c.createPod(t, ns, p)
		}
		var first map[string]string
		deadline := time.Now().Add(30 * time.Second)
		for len(first) < 2 && time.Now().Before(deadline) {
			first = c.boundPods(t, ns)
			checkOneGang(t, first)
			time.Sleep(100 * time.Millisecond)
		}
		if len(first) != 2 {
			t.Fatalf("want one whole gang bound, bound: %v", first)
		}
		// It stays that way: the other gang does not fit and must not bind part of itself.
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if now := c.boundPods(t, ns); len(now) != 2 {
				t.Fatalf("bound changed from %v to %v", first, now)
			}
		}
	}},
	{"gang where only some members fit binds none", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 3, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 4})
		for _, n := range []string{"w-0", "w-1", "w-2", "w-3"} {
			c.createPod(t, ns, podSpec{name: n, workload: "job", podGroup: "workers"})
		}
		c.stayUnbound(t, ns, 8*time.Second, "w-0", "w-1", "w-2", "w-3")
	}},
	{"members and Workloads deleted at any moment keep the index consistent", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3})

		// While the gang waits for quorum: a member leaves and another comes.
		// Two are present, not three: nothing may bind.
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.deletePod(t, ns, "w-0")
		// Once w-0 is gone from the API server, the scheduler's pod watch
		// delivers its deletion before w-2's creation (one watch, in
		// resourceVersion order): the index never counts both.
		c.wantGone(t, ns, "w-0")
		c.createPod(t, ns, podSpec{name: "w-2", workload: "job", podGroup: "workers"})
		c.waitEvent(t, ns, "job", "WaitingForGangMembers", "/3 present")
		c.stayUnbound(t, ns, 2*time.Second, "w-1", "w-2")

		// Quorum with room for two: two members wait at Permit, one does not fit.
		c.createPod(t, ns, podSpec{name: "w-3", workload: "job", podGroup: "workers"})
		c.stayUnbound(t, ns, 3*time.Second, "w-1", "w-2", "w-3")
		// A member is deleted while its siblings wait at Permit (the in-tree
		// 1.35 plugin crashes the scheduler here), then the Workload.
		c.deletePod(t, ns, "w-1")
		c.stayUnbound(t, ns, 2*time.Second, "w-2", "w-3")
		c.deleteWorkload(t, ns, "job")
		c.waitEvent(t, ns, "w-2", "WorkloadNotFound", `Workload "job"`)

		// The scheduler still works, and a new gang with room completes.
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		c.waitBound(t, ns, 30*time.Second, "w-2", "w-3")

		// Members deleted after they were bound; their replacement joins a
		// gang that still has one bound member and needs one more placed.
		c.deletePod(t, ns, "w-2")
		c.createPod(t, ns, podSpec{name: "w-4", workload: "job", podGroup: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-3", "w-4")
	}},
	{"bad plugin args stop the scheduler at start naming the field", func(t *testing.T, c *cluster) {
		tests := []struct {
			name  string
			args  map[string]interface{}
			field string
		}{
			{name: "unknown field", args: map[string]interface{}{"permitWaitingTimeSecond": 30}, field: `unknown field "permitWaitingTimeSecond"`},
			{name: "zero timeout", args: map[string]interface{}{"permitWaitingTimeSeconds": 0}, field: "permitWaitingTimeSeconds"},
			{name: "above the framework cap", args: map[string]interface{}{"permitWaitingTimeSeconds": 901}, field: "permitWaitingTimeSeconds"},
			{name: "negative backoff", args: map[string]interface{}{"podGroupBackoffSeconds": -1}, field: "podGroupBackoffSeconds"},
			{name: "backoff above an hour", args: map[string]interface{}{"podGroupBackoffSeconds": 3601}, field: "podGroupBackoffSeconds"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				file := c.schedulerConfig(t, func(cfg map[string]interface{}) {
					profile := cfg["profiles"].([]interface{})[0].(map[string]interface{})
					pluginConfig := profile["pluginConfig"].([]interface{})[0].(map[string]interface{})
					pluginConfig["args"] = tc.args
				})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				_, err := setupScheduler(ctx, file)
				if err == nil {
					t.Fatalf("scheduler started with args %v", tc.args)
				}
				if !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("error %q does not name %s", err, tc.field)
				}
				t.Logf("error: %v", err)
			})
		}
	}},
}

// checkOneGang fails the test if bound pods belong to more than one gang: the
// pods are named <gang>-<n>.
func checkOneGang(t *testing.T, bound map[string]string) {
	t.Helper()
	gangs := map[string]bool{}
	for name := range bound {
		gangs[name[:strings.IndexByte(name, '-')]] = true
	}
	if len(gangs) > 1 {
		t.Fatalf("members of two gangs bound at once (never 1+1): %v", bound)
	}
}

// TestWorkloadAPINotServed runs the scheduler against an API server that keeps
// spec.workloadRef (GenericWorkload on) but does not serve
// scheduling.k8s.io/v1alpha1.
func TestWorkloadAPINotServed(t *testing.T) {
	c := startCluster(t, "--feature-gates=GenericWorkload=true")
	ns := c.namespace(t)
	c.addNodes(t, ns, 1, "4")
	c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})

	// The API server shares this process's feature gates. Our scheduler runs
	// in a process of its own with GenericWorkload off, as shipped: turn the
	// gate off before starting it. (A stock kube-scheduler with the gate on
	// waits forever for a Workload cache from such a server.)
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.GenericWorkload, false)
	// A scheduler that waited for a Workload cache would never bind the plain pod.
	c.startScheduler(t)
	c.createPod(t, ns, podSpec{name: "plain"})
	c.waitBound(t, ns, 30*time.Second, "plain")
	note := c.waitEvent(t, ns, "w-0", "WorkloadAPINotServed", "scheduling.k8s.io/v1alpha1")
	t.Logf("event: %s", note)
	c.stayUnbound(t, ns, 2*time.Second, "w-0")
}
