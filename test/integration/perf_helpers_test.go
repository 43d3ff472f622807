package integration

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/legacyregistry"
)

// wantGangsInRacks fails unless the members of each gang gN are bound in
// one rack (node i is in rack i % racks).
func (c *cluster) wantGangsInRacks(t *testing.T, ns string, racks int) {
	t.Helper()
	rackOf := map[string]int{}
	for pod, node := range c.boundPods(t, ns) {
		i, err := strconv.Atoi(node[strings.LastIndexByte(node, '-')+1:])
		if err != nil {
			t.Fatalf("node %s of pod %s: %v", node, pod, err)
		}
		g := pod[:strings.IndexByte(pod, '-')]
		if r, seen := rackOf[g]; seen && r != i%racks {
			t.Fatalf("gang %s spans racks r%d and r%d", g, r, i%racks)
		}
		rackOf[g] = i % racks
	}
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
func (c *cluster) addNodesParallel(t *testing.T, pool string, n int, cpu string, racks int) {
	t.Helper()
	parallel(t, n, func(i int) error {
		var labels map[string]string
		if racks > 0 {
			labels = map[string]string{rackLabel: fmt.Sprintf("r%d", i%racks)}
		}
		return c.createLabelledNode(pool, fmt.Sprintf("%s-node-%d", pool, i), cpu, labels)
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
