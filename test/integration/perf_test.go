package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/kubernetes/pkg/features"
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
	}},
	"full": {limit: 6 * time.Minute, rounds: 3, scenarios: []perfScenario{
		{name: "gangs of 4, all fit", nodes: 1000, gangs: 500, size: 4, nodeCPU: "4", podCPU: "1"},
		{name: "gangs of 3 on many nodes", nodes: 5000, gangs: 1000, size: 3, nodeCPU: "4", podCPU: "1"},
		{name: "one gang on every node", nodes: 1000, gangs: 1, size: 1000, nodeCPU: "1", podCPU: "1"},
		{name: "contention: 150% of the cluster", nodes: 1000, gangs: 150, size: 10, nodeCPU: "1", podCPU: "1", contention: true, gangOnly: true},
		{name: "rollback: gang of n+1 on n nodes", nodes: 100, gangs: 1, size: 101, nodeCPU: "1", podCPU: "1", probe: true, gangOnly: true},
		{name: "gangs of 3 arriving, 5000 nodes", nodes: 5000, gangs: 1000, size: 3, nodeCPU: "4", podCPU: "1", arriving: true},
		{name: "preemption: a gang of 8 on 1000 full nodes", nodes: 1000, gangs: 1, size: 8, nodeCPU: "1", podCPU: "1", preempt: true},
	}},
}

// perfVariant is a scheduler to measure.
type perfVariant struct {
	name string
	// profile is the schedulerName the pods ask for.
	profile string
	// gangs: the pods carry spec.workloadRef.
	gangs bool
	start func(t *testing.T, c *cluster)
}

var perfVariants = []perfVariant{
	{name: "ours", profile: schedulerName, gangs: true, start: func(t *testing.T, c *cluster) {
		c.runScheduler(t, c.schedulerConfig(t, func(cfg map[string]interface{}) {
			cfg["clientConnection"] = perfClientConnection(c)
		}))
	}},
	{name: "in-tree", profile: "in-tree-gang", gangs: true, start: func(t *testing.T, c *cluster) {
		// Stock kube-scheduler 1.35.4 with its gang plugin: default
		// plugins, GenericWorkload (on in this process) and GangScheduling.
		featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.GangScheduling, true)
		c.runStockScheduler(t, "in-tree-gang")
	}},
	{name: "plain", profile: "default-scheduler", start: func(t *testing.T, c *cluster) { c.runStockScheduler(t, "default-scheduler") }},
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
		t.Run("warm-up/"+v.name, func(t *testing.T) { c.runPerf(t, warmUp, v, size.limit) })
	}
	var results []perfResult
	for i, s := range size.scenarios {
		if !only.MatchString(s.name) {
			continue
		}
		var variants []perfVariant
		for _, v := range perfVariants {
			if !s.gangOnly || v.gangs {
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
	c.addNodesParallel(t, ns, s.nodes, s.nodeCPU)

	want := s.pods()
	if s.contention {
		perNode := 1 // whole-node pods in the contention scenario
		want = (s.nodes * perNode / s.size) * s.size
	}
	if v.gangs {
		for g := 0; g < s.gangs; g++ {
			c.createWorkload(t, ns, fmt.Sprintf("job%d", g), podGroup{name: "workers", minCount: int32(s.size)})
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
	c.logEvents(t, ns)
	r := perfResult{scenario: s.name, variant: v.name, pods: want, gangs: want / s.size, elapsed: elapsed, done: done,
		queueAdds: counterSum(t, "scheduler_queue_incoming_pods_total") - addsBefore}
	if s.probe {
		r.pods, r.gangs = 1, 0
	}
	return r
}

// logEvents logs how many events of each reason the run wrote: each is an
// API write the scheduler made besides binding.
func (c *cluster) logEvents(t *testing.T, ns string) {
	events, err := c.client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byReason := map[string]int{}
	for _, e := range events.Items {
		byReason[e.Reason]++
	}
	t.Logf("events by reason: %v", byReason)
}

// waitEventReason waits for any event of the reason in the namespace.
func (c *cluster) waitEventReason(t *testing.T, ns, reason string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		events, err := c.client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Reason == reason {
				return
			}
		}
	}
	t.Fatalf("no %s event in %s within %v", reason, ns, limit)
}

// boundCounter follows the namespace's pods with an informer, so that
// watching for the end of a run costs the API server next to nothing.
type boundCounter struct {
	mu      sync.Mutex
	bound   map[string]bool
	changed chan struct{}
	stop    chan struct{}
}

func (c *cluster) countBound(t *testing.T, ns string) *boundCounter {
	b := &boundCounter{bound: map[string]bool{}, changed: make(chan struct{}, 1), stop: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(ns))
	record := func(obj interface{}) {
		if pod, ok := obj.(*v1.Pod); ok && pod.Spec.NodeName != "" {
			b.mu.Lock()
			b.bound[pod.Name] = true
			b.mu.Unlock()
			select {
			case b.changed <- struct{}{}:
			default:
			}
		}
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj interface{}) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(b.stop)
	factory.WaitForCacheSync(b.stop)
	t.Cleanup(func() { close(b.stop); factory.Shutdown() })
	return b
}

// wait returns how long it took until done(bound) held, and whether it did
// within limit.
func (b *boundCounter) wait(done func(map[string]bool) bool, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	deadline := time.After(limit)
	for {
		b.mu.Lock()
		ok := done(b.bound)
		b.mu.Unlock()
		if ok {
			return time.Since(start), true
		}
		select {
		case <-b.changed:
		case <-deadline:
			return time.Since(start), false
		}
	}
}

// addNodesParallel creates n Ready nodes with a few concurrent writers.
func (c *cluster) addNodesParallel(t *testing.T, pool string, n int, cpu string) {
	t.Helper()
	parallel(t, n, func(i int) error {
		return c.createNode(pool, fmt.Sprintf("%s-node-%d", pool, i), cpu)
	})
}

// fillNodes puts a low-priority pod on each node of the pool, bound by
// spec.nodeName (no scheduler places it).
func (c *cluster) fillNodes(t *testing.T, ns string, n int, cpu string) {
	t.Helper()
	parallel(t, n, func(i int) error {
		pod := c.podObject(ns, podSpec{name: fmt.Sprintf("filler-%d", i), cpu: cpu, priorityClass: lowPriority})
		pod.Spec.NodeName = fmt.Sprintf("%s-node-%d", ns, i)
		_, err := c.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
		return err
	})
}

func (c *cluster) createPodsParallel(t *testing.T, ns string, pods []podSpec) {
	t.Helper()
	parallel(t, len(pods), func(i int) error {
		_, err := c.client.CoreV1().Pods(ns).Create(context.Background(), c.podObject(ns, pods[i]), metav1.CreateOptions{})
		return err
	})
}

// parallel runs f(0..n-1) on 16 workers and marks t failed on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err) // Error, not Fatal: the pods of a run may be created off the test's goroutine
		return
	}
}

// median returns the run with the median time; an unfinished run counts as
// the slowest.
func median(runs []perfResult) perfResult {
	sorted := append([]perfResult(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].done != sorted[j].done {
			return sorted[i].done
		}
		return sorted[i].elapsed < sorted[j].elapsed
	})
	m := sorted[len(sorted)/2]
	m.rounds = len(runs)
	return m
}

func perfTable(results []perfResult) string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tscheduler\tpods\tgangs\trounds\tmedian s\tpods/s\tgangs/s\tthis s ÷ ours s\tqueue adds")
	byScenario := map[string]map[string]perfResult{}
	for _, r := range results {
		if byScenario[r.scenario] == nil {
			byScenario[r.scenario] = map[string]perfResult{}
		}
		byScenario[r.scenario][r.variant] = r
	}
	for _, r := range results {
		seconds := fmt.Sprintf("%.3f", r.elapsed.Seconds())
		podsPerSec, gangsPerSec := "-", "-"
		if !r.done {
			seconds = fmt.Sprintf("> %.0f (unfinished)", r.elapsed.Seconds())
		} else if r.pods > 1 {
			podsPerSec = fmt.Sprintf("%.0f", float64(r.pods)/r.elapsed.Seconds())
			gangsPerSec = fmt.Sprintf("%.1f", float64(r.gangs)/r.elapsed.Seconds())
		}
		ratio := "-"
		if ours := byScenario[r.scenario]["ours"]; r.variant != "ours" && ours.done && r.done {
			// Speed of ours over this one: time taken by this one ÷ ours. An
			// unfinished run has no ratio: its time is the limit, not a
			// measurement.
			ratio = fmt.Sprintf("%.2f×", r.elapsed.Seconds()/ours.elapsed.Seconds())
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.0f\n", r.scenario, r.variant, r.pods, r.gangs, r.rounds, seconds, podsPerSec, gangsPerSec, ratio, r.queueAdds)
	}
	w.Flush()
	return sb.String()
}

// counterSum is the sum of a counter of this process's registry over all its
// labels (the schedulers of the tests run in this process).
func counterSum(t *testing.T, name string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
