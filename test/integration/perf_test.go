package integration

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/kubernetes/pkg/features"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

var (
	perfSize   = flag.String("perf.size", "smoke", "size of TestPerformance: smoke (part of make test), quick (make bench) or full")
	perfOut    = flag.String("perf.out", "", "also write TestPerformance's results table to this file")
	perfOnly   = flag.String("perf.only", "", "run only the scenarios whose name matches this regular expression")
	perfRounds = flag.Int("perf.rounds", 0, "rounds per scenario and variant (0: the size's own)")
)

// perfScenario is one workload, run through each scheduler variant.
type perfScenario struct {
	name  string
	nodes int
	// gangs of size each; nodeCPU and podCPU set how many members a node holds.
	gangs, size     int
	nodeCPU, podCPU string
	// contention: the gangs need more than the cluster has; the run ends when
	// the cluster holds as many whole gangs as fit (want bound pods).
	contention bool
	// probe: a plain pod that needs a node the gang reserved; the run ends
	// when it binds (the rollback latency).
	probe bool
	// gangOnly: the plain-pod ceiling means nothing here.
	gangOnly bool
	// preempt: every node is full with a low-priority pod (created with
	// spec.nodeName) and the gangs are of high priority: the time is until
	// they are bound, victims evicted (a reaper ends them, as kubelets would).
	preempt bool
	// arriving: the pods are created while the scheduler runs, as a batch
	// framework creates them (upstream's gang benchmark shape); the run is
	// timed from the first creation.
	arriving bool
	// racks: the nodes are labelled into this many racks, round robin;
	// the variant "ours, required rack" places each gang inside one.
	racks int
}

func (s perfScenario) pods() int { return s.gangs * s.size }

// perfSize is a set of scenarios and how long a run may take before it
// counts as unfinished (the in-tree plugin holds reservations for 5 minutes).
type perfSizeSpec struct {
	scenarios []perfScenario
	limit     time.Duration
	// rounds: each scenario runs this many times per variant, the variants
	// in a rotating order; the median counts.
	rounds int
}

var perfSizes = map[string]perfSizeSpec{
	"smoke": {limit: 15 * time.Second, rounds: 1, scenarios: []perfScenario{
		{name: "gangs of 4, all fit", nodes: 20, gangs: 10, size: 4, nodeCPU: "4", podCPU: "1"},
		{name: "gangs of 4 in 4 racks", nodes: 20, gangs: 10, size: 4, nodeCPU: "4", podCPU: "1", racks: 4},
		{name: "one gang on every node", nodes: 20, gangs: 1, size: 20, nodeCPU: "1", podCPU: "1"},
		{name: "contention: 150% of the cluster", nodes: 20, gangs: 6, size: 5, nodeCPU: "1", podCPU: "1", contention: true, gangOnly: true},
		{name: "rollback: gang of n+1 on n nodes", nodes: 5, gangs: 1, size: 6, nodeCPU: "1", podCPU: "1", probe: true, gangOnly: true},
	}},
	"quick": {limit: 2 * time.Minute, rounds: 3, scenarios: []perfScenario{
		{name: "gangs of 4, all fit", nodes: 200, gangs: 100, size: 4, nodeCPU: "4", podCPU: "1"},
		{name: "gangs of 3 on many nodes", nodes: 1000, gangs: 200, size: 3, nodeCPU: "4", podCPU: "1"},
		{name: "one gang on every node", nodes: 200, gangs: 1, size: 200, nodeCPU: "1", podCPU: "1"},
		{name: "contention: 150% of the cluster", nodes: 100, gangs: 15, size: 10, nodeCPU: "1", podCPU: "1", contention: true, gangOnly: true},
		{name: "rollback: gang of n+1 on n nodes", nodes: 20, gangs: 1, size: 21, nodeCPU: "1", podCPU: "1", probe: true, gangOnly: true},
		{name: "gangs of 3 arriving, 5000 nodes", nodes: 5000, gangs: 1000, size: 3, nodeCPU: "4", podCPU: "1", arriving: true},
		{name: "preemption: a gang of 8 on 1000 full nodes", nodes: 1000, gangs: 1, size: 8, nodeCPU: "1", podCPU: "1", preempt: true},
		{name: "gangs of 8, 1000 nodes in 50 racks", nodes: 1000, gangs: 200, size: 8, nodeCPU: "4", podCPU: "1", racks: 50},
	}},
	"full": {limit: 6 * time.Minute, rounds: 3, scenarios: []perfScenario{
		{name: "gangs of 4, all fit", nodes: 1000, gangs: 500, size: 4, nodeCPU: "4", podCPU: "1"},
		{name: "gangs of 3 on many nodes", nodes: 5000, gangs: 1000, size: 3, nodeCPU: "4", podCPU: "1"},
		{name: "one gang on every node", nodes: 1000, gangs: 1, size: 1000, nodeCPU: "1", podCPU: "1"},
		{name: "contention: 150% of the cluster", nodes: 1000, gangs: 150, size: 10, nodeCPU: "1", podCPU: "1", contention: true, gangOnly: true},
		{name: "rollback: gang of n+1 on n nodes", nodes: 100, gangs: 1, size: 101, nodeCPU: "1", podCPU: "1", probe: true, gangOnly: true},
		{name: "gangs of 3 arriving, 5000 nodes", nodes: 5000, gangs: 1000, size: 3, nodeCPU: "4", podCPU: "1", arriving: true},
		{name: "preemption: a gang of 8 on 1000 full nodes", nodes: 1000, gangs: 1, size: 8, nodeCPU: "1", podCPU: "1", preempt: true},
		{name: "gangs of 8, 1000 nodes in 50 racks", nodes: 1000, gangs: 200, size: 8, nodeCPU: "4", podCPU: "1", racks: 50},
		{name: "gangs of 8, 5000 nodes in 250 racks", nodes: 5000, gangs: 1000, size: 8, nodeCPU: "4", podCPU: "1", racks: 250},
	}},
}

// perfVariant is a scheduler to measure.
type perfVariant struct {
	name string
	// profile is the schedulerName the pods ask for.
	profile string
	// gangs: the pods carry spec.workloadRef.
	gangs bool
	// topology: the Workloads require a rack (scenarios with racks only).
	topology bool
	start    func(t *testing.T, c *cluster)
}

var perfVariants = []perfVariant{
	{name: "ours", profile: schedulerName, gangs: true, start: startOurs},
	{name: "ours, required rack", profile: schedulerName, gangs: true, topology: true, start: startOurs},
	{name: "in-tree", profile: "in-tree-gang", gangs: true, start: func(t *testing.T, c *cluster) {
		// Stock kube-scheduler 1.35.4 with its gang plugin: default
		// plugins, GenericWorkload (on in this process) and GangScheduling.
		featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.GangScheduling, true)
		c.runStockScheduler(t, "in-tree-gang")
	}},
	{name: "plain", profile: "default-scheduler", start: func(t *testing.T, c *cluster) { c.runStockScheduler(t, "default-scheduler") }},
}

func startOurs(t *testing.T, c *cluster) {
	c.runScheduler(t, c.schedulerConfig(t, func(cfg map[string]interface{}) {
		cfg["clientConnection"] = perfClientConnection(c)
	}))
}

// perfClientConnection lifts kube-scheduler's API client limit (50 QPS by
// default) for every variant alike, so that the runs measure scheduling and
// not the client's rate limiter.
func perfClientConnection(c *cluster) map[string]interface{} {
	return map[string]interface{}{"kubeconfig": c.kubeconfig, "qps": 5000, "burst": 5000}
}

// runStockScheduler runs kube-scheduler with its default plugins and feature
// gates (none of this project's defaults) under one profile name.
func (c *cluster) runStockScheduler(t *testing.T, profile string) {
	t.Helper()
	cfg := map[string]interface{}{
		"apiVersion":       "kubescheduler.config.k8s.io/v1",
		"kind":             "KubeSchedulerConfiguration",
		"clientConnection": perfClientConnection(c),
		"leaderElection":   map[string]interface{}{"leaderElect": false},
		"profiles":         []interface{}{map[string]interface{}{"schedulerName": profile}},
	}
	runSchedulerWithGates(t, c.writeConfig(t, cfg))
}

type perfResult struct {
	scenario, variant string
	pods, gangs       int
	elapsed           time.Duration
	done              bool
	rounds            int
	// queueAdds is how many times the scheduler's queue took a pod in
	// (scheduler_queue_incoming_pods_total, every queue and event): each pod
	// once, and once more for every requeue an event caused.
	queueAdds float64
}

// TestPerformance runs the same workloads through this scheduler, the stock
// 1.35.4 scheduler with its GangScheduling plugin, and the stock scheduler
// on the same pods without workloadRef (the ceiling), side by side on one
// API server, and prints pods/s, gangs/s and the ratios. Each run starts
// with every object created and the scheduler stopped, and ends when the
// pods it must bind are bound.
func TestPerformance(t *testing.T) {
	size, ok := perfSizes[*perfSize]
	if !ok {
		t.Fatalf("unknown -perf.size %q", *perfSize)
	}
	if *perfRounds > 0 {
		size.rounds = *perfRounds
	}
	only, err := regexp.Compile(*perfOnly)
	if err != nil {
		t.Fatalf("-perf.only: %v", err)
	}
	c := startCluster(t, workloadAPIFlags...)
	// One untimed run per variant first: the first scheduler of a process
	// and the first objects of an API server pay one-time costs.
	warmUp := perfSizes["smoke"].scenarios[0]
	for _, v := range perfVariants {
		if v.topology {
			continue // the same scheduler as ours
		}
		t.Run("warm-up/"+v.name, func(t *testing.T) { c.runPerf(t, warmUp, v, size.limit) })
	}
	var results []perfResult
	for i, s := range size.scenarios {
		if !only.MatchString(s.name) {
			continue
		}
		var variants []perfVariant
		for _, v := range perfVariants {
			if (!s.gangOnly || v.gangs) && (!v.topology || s.racks > 0) {
				variants = append(variants, v)
			}
		}
		runs := map[string][]perfResult{}
		for round := 0; round < size.rounds; round++ {
			for j := range variants {
				v := variants[(i+round+j)%len(variants)]
				if prev := runs[v.name]; len(prev) > 0 && !prev[len(prev)-1].done {
					continue // unfinished once: its time limit says enough
				}
				t.Run(fmt.Sprintf("%s/%s/round-%d", s.name, v.name, round), func(t *testing.T) {
					r := c.runPerf(t, s, v, size.limit)
					runs[v.name] = append(runs[v.name], r)
					t.Logf("%d pods in %v (done: %v)", r.pods, r.elapsed.Round(time.Millisecond), r.done)
					if v.name != "in-tree" && !r.done {
						t.Errorf("%s did not finish %q within its time limit", v.name, s.name)
					}
				})
			}
		}
		for _, v := range variants {
			results = append(results, median(runs[v.name]))
		}
	}
	table := perfTable(results)
	t.Logf("results (-perf.size=%s):\n%s", *perfSize, table)
	if *perfOut != "" {
		if err := os.WriteFile(*perfOut, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *cluster) runPerf(t *testing.T, s perfScenario, v perfVariant, limit time.Duration) perfResult {
	ns := c.namespace(t)
	c.addNodesParallel(t, ns, s.nodes, s.nodeCPU, s.racks)

	want := s.pods()
	if s.contention {
		perNode := 1 // whole-node pods in the contention scenario
		want = (s.nodes * perNode / s.size) * s.size
	}
	if v.gangs {
		var annotations map[string]string
		if v.topology {
			annotations = map[string]string{gang.TopologyRequiredAnnotation: rackLabel}
		}
		for g := 0; g < s.gangs; g++ {
			c.createWorkloadAnnotated(t, ns, fmt.Sprintf("job%d", g), annotations, podGroup{name: "workers", minCount: int32(s.size)})
		}
	}
	if s.preempt {
		c.ensurePriorityClasses(t)
		c.reapTerminating(t, ns)
		c.fillNodes(t, ns, s.nodes, s.podCPU)
	}
	pods := make([]podSpec, 0, s.pods())
	for g := 0; g < s.gangs; g++ {
		for i := 0; i < s.size; i++ {
			p := podSpec{name: fmt.Sprintf("g%d-%d", g, i), cpu: s.podCPU, scheduler: v.profile}
			if s.preempt {
				p.priorityClass = highPriority
			}
			if v.gangs {
				p.workload, p.podGroup = fmt.Sprintf("job%d", g), "workers"
			}
			pods = append(pods, p)
		}
	}
	if s.arriving {
		// The scheduler runs, its informers synced, before the first pod.
		v.start(t, c)
		c.createPod(t, ns, podSpec{name: "ready", cpu: s.podCPU, scheduler: v.profile})
		c.waitBound(t, ns, limit, "ready")
		c.deletePod(t, ns, "ready")
	} else {
		c.createPodsParallel(t, ns, pods)
	}

	counter := c.countBound(t, ns)
	addsBefore := counterSum(t, "scheduler_queue_incoming_pods_total")
	target := func(bound map[string]bool) bool {
		if s.probe {
			return bound["probe-0"]
		}
		n := 0
		for name := range bound {
			if strings.HasPrefix(name, "g") {
				n++
			}
		}
		return n >= want
	}
	start := time.Now()
	created := make(chan struct{})
	if s.arriving {
		go func() {
			defer close(created)
			c.createPodsParallel(t, ns, pods)
		}()
	} else {
		close(created)
		v.start(t, c)
	}
	if s.probe {
		// The gang fails as soon as a member fits nowhere; from then on,
		// time how long a plain pod waits for one of the gang's nodes.
		c.waitEventReason(t, ns, "FailedScheduling", limit)
		start = time.Now()
		c.createPod(t, ns, podSpec{name: "probe-0", cpu: s.podCPU, scheduler: v.profile})
	}
	_, done := counter.wait(target, limit)
	elapsed := time.Since(start)
	<-created
	if v.topology && done {
		c.wantGangsInRacks(t, ns, s.racks)
	}
	c.logEvents(t, ns)
	r := perfResult{scenario: s.name, variant: v.name, pods: want, gangs: want / s.size, elapsed: elapsed, done: done,
		queueAdds: counterSum(t, "scheduler_queue_incoming_pods_total") - addsBefore}
	if s.probe {
		r.pods, r.gangs = 1, 0
	}
	return r
}
