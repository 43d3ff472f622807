package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// PriorityClasses of the preemption cases.
const (
	lowestPriority    = "wcs-test-lowest"
	lowPriority       = "wcs-test-low"
	highPriority      = "wcs-test-high"
	highNeverPreempts = "wcs-test-high-never"
	topPriority       = "wcs-test-top"
)

// preemptionCases are gang-aware priority and preemption against the real
// API server: victims placed by our scheduler (plain pods and gangs), a
// reaper standing in for the kubelets that would end evicted pods.
var preemptionCases = []clusterCase{
	{"futile preemption evicts nothing: a high-priority gang of 4 on 3 nodes", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 3, "1")
		low := c.createLowPods(t, ns, 3)
		c.createWorkload(t, ns, "high", podGroup{name: "workers", minCount: 4})
		c.createPriorityGang(t, ns, "high", "h", 4, highPriority)
		c.waitEvent(t, ns, "high", "GangRolledBack", "would not make room")
		c.stayUnbound(t, ns, 3*time.Second, "h-0", "h-1", "h-2", "h-3")
		c.wantAlive(t, ns, low...)
	}},
	{"a running low-priority gang is evicted whole, never in part, for a high-priority gang", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 4, "1")
		mon := c.monitorGangs(t, ns)
		c.createWorkload(t, ns, "low", podGroup{name: "workers", minCount: 4})
		c.createPriorityGang(t, ns, "low", "l", 4, lowPriority)
		c.waitBound(t, ns, 30*time.Second, "l-0", "l-1", "l-2", "l-3")
		c.createWorkload(t, ns, "high", podGroup{name: "workers", minCount: 2})
		c.createPriorityGang(t, ns, "high", "h", 2, highPriority)
		c.waitBound(t, ns, 30*time.Second, "h-0", "h-1")
		c.wantGone(t, ns, "l-0", "l-1", "l-2", "l-3")
		c.waitEvent(t, ns, "low", "GangPreempted", "preempted whole (4 pods)")
		mon.check(t)
	}},
	{"a high-priority gang evicts exactly the low-priority pods it needs", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 4, "1")
		low := c.createLowPods(t, ns, 4)
		c.createWorkload(t, ns, "high", podGroup{name: "workers", minCount: 2})
		c.createPriorityGang(t, ns, "high", "h", 2, highPriority)
		c.waitAmongBound(t, ns, 30*time.Second, "h-0", "h-1")
		alive := c.aliveOf(t, ns, low...)
		if len(alive) != 2 {
			t.Fatalf("low-priority pods left: %v, want 2 of 4", alive)
		}
		c.waitBound(t, ns, 5*time.Second, append(alive, "h-0", "h-1")...)
		note := c.waitEvent(t, ns, "high", "GangPreempting", "evicts")
		t.Logf("event: %s", note)
	}},
	{"a plain high-priority pod on a cluster full of a low-priority gang evicts the gang whole", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 4, "1")
		c.createWorkload(t, ns, "low", podGroup{name: "workers", minCount: 4})
		c.createPriorityGang(t, ns, "low", "l", 4, lowPriority)
		c.waitBound(t, ns, 30*time.Second, "l-0", "l-1", "l-2", "l-3")
		c.createPod(t, ns, podSpec{name: "plain", priorityClass: highPriority})
		c.waitBound(t, ns, 30*time.Second, "plain")
		c.wantGone(t, ns, "l-0", "l-1", "l-2", "l-3")
	}},
	{"preemptionPolicy Never on one member keeps the whole gang from preempting; equal priority preempts nothing", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 2, "1")
		low := c.createLowPods(t, ns, 2)
		c.createWorkload(t, ns, "never", podGroup{name: "workers", minCount: 2})
		c.createPod(t, ns, podSpec{name: "n-0", workload: "never", podGroup: "workers", priorityClass: highPriority})
		c.createPod(t, ns, podSpec{name: "n-1", workload: "never", podGroup: "workers", priorityClass: highNeverPreempts})
		c.waitEvent(t, ns, "never", "GangRolledBack", "does not fit")
		c.createWorkload(t, ns, "equal", podGroup{name: "workers", minCount: 2})
		c.createPriorityGang(t, ns, "equal", "e", 2, lowPriority)
		c.waitEvent(t, ns, "equal", "GangRolledBack", "does not fit")
		c.stayUnbound(t, ns, 3*time.Second, "n-0", "n-1", "e-0", "e-1")
		c.wantAlive(t, ns, low...)
	}},
	{"a victim a PodDisruptionBudget protects is spared when another will do", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 2, "1")
		protected := c.podObject(ns, podSpec{name: "protected", priorityClass: lowPriority})
		protected.Labels = map[string]string{"app": "protected"}
		if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), protected, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitBound(t, ns, 30*time.Second, "protected")
		c.createPod(t, ns, podSpec{name: "other", priorityClass: lowPriority})
		c.waitBound(t, ns, 30*time.Second, "protected", "other")
		// No disruption controller runs here: the budget allows none.
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "protected"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "protected"}}},
		}
		if _, err := c.client.PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), pdb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the scheduler's informer learns of the budget
		c.createPod(t, ns, podSpec{name: "high", priorityClass: highPriority})
		c.waitBound(t, ns, 30*time.Second, "protected", "high")
		c.wantGone(t, ns, "other")
	}},
	{"priority holds when capacity frees: the high-priority gang takes it, whatever the backoffs", func(t *testing.T, c *cluster) {
		ns := c.preemptionNamespace(t)
		c.addNodes(t, ns, 4, "1")
		// The nodes are held by pods neither gang may preempt.
		var fillers []string
		for i := 0; i < 4; i++ {
			name := fmt.Sprintf("filler-%d", i)
			c.createPod(t, ns, podSpec{name: name, priorityClass: topPriority})
			fillers = append(fillers, name)
		}
		c.waitBound(t, ns, 30*time.Second, fillers...)
		c.createWorkload(t, ns, "low", podGroup{name: "workers", minCount: 4})
		c.createPriorityGang(t, ns, "low", "l", 4, lowPriority)
		c.waitEvent(t, ns, "low", "GangRolledBack", "does not fit")
		time.Sleep(time.Second)
		c.createWorkload(t, ns, "high", podGroup{name: "workers", minCount: 4})
		c.createPriorityGang(t, ns, "high", "h", 4, highPriority)
		c.waitEvent(t, ns, "high", "GangRolledBack", "does not fit")
		start := time.Now()
		for _, name := range fillers {
			c.deletePod(t, ns, name)
		}
		c.waitBound(t, ns, 5*time.Second, "h-0", "h-1", "h-2", "h-3")
		t.Logf("the high-priority gang bound %v after the nodes were freed", time.Since(start).Round(10*time.Millisecond))
	}},
}

// preemptionNamespace is a namespace for a preemption case, with the
// PriorityClasses, a reaper (nothing else ends evicted pods here) and the
// invariant watcher.
func (c *cluster) preemptionNamespace(t *testing.T) string {
	t.Helper()
	c.ensurePriorityClasses(t)
	ns := c.namespace(t)
	c.reapTerminating(t, ns)
	// Never partial for longer than binding takes, never bound twice, in
	// every case.
	inv := c.watchInvariants(t, ns)
	t.Cleanup(func() { inv.check(t) })
	return ns
}

func (c *cluster) ensurePriorityClasses(t *testing.T) {
	t.Helper()
	for name, value := range map[string]int32{lowestPriority: 10, lowPriority: 100, highPriority: 1000, highNeverPreempts: 1000, topPriority: 10000} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
		if name == highNeverPreempts {
			pc.PreemptionPolicy = ptr.To(v1.PreemptNever)
		}
		if _, err := c.client.SchedulingV1().PriorityClasses().Create(context.Background(), pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// reapTerminating ends the namespace's terminating pods, as their kubelets
// would once the containers stopped, until t ends.
func (c *cluster) reapTerminating(t *testing.T, ns string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil && len(p.Finalizers) == 0 {
					_ = c.client.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// createLowPods creates n low-priority plain pods, bound by our scheduler.
func (c *cluster) createLowPods(t *testing.T, ns string, n int) []string {
	t.Helper()
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("low-%d", i)
		c.createPod(t, ns, podSpec{name: name, priorityClass: lowPriority})
		names = append(names, name)
	}
	c.waitBound(t, ns, 30*time.Second, names...)
	return names
}

func (c *cluster) createPriorityGang(t *testing.T, ns, workload, prefix string, n int, class string) {
	t.Helper()
	for i := 0; i < n; i++ {
		c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", prefix, i), workload: workload, podGroup: "workers", priorityClass: class})
	}
}

// aliveOf returns those of the named pods that exist and are not terminating.
func (c *cluster) aliveOf(t *testing.T, ns string, names ...string) []string {
	t.Helper()
	var alive []string
	for _, name := range names {
		pod, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && pod.DeletionTimestamp == nil {
			alive = append(alive, name)
		}
	}
	return alive
}

// waitAmongBound waits until the named pods are bound, whatever else is.
func (c *cluster) waitAmongBound(t *testing.T, ns string, timeout time.Duration, names ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bound := c.boundPods(t, ns)
		missing := 0
		for _, name := range names {
			if bound[name] == "" {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %v bound within %v, bound: %v", names, timeout, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantAlive fails unless every named pod exists and is not terminating.
func (c *cluster) wantAlive(t *testing.T, ns string, names ...string) {
	t.Helper()
	if alive := c.aliveOf(t, ns, names...); len(alive) != len(names) {
		t.Fatalf("evicted for nothing: of %v only %v remain", names, alive)
	}
}

// wantGone waits until none of the named pods exists.
func (c *cluster) wantGone(t *testing.T, ns string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, name := range names {
			if _, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{}); err == nil {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods %s still exist", strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// preemptionChurn is how long the preemption churn runs in make test.
const preemptionChurn = 30 * time.Second

// churnCase: low-priority gangs of 4 and high-priority gangs of 2 arrive on
// 16 nodes, now and then a high-priority gang too large for the cluster,
// and whole gangs finish. No gang may be left broken by an eviction, and
// every eviction must be followed by a higher-priority pod on its node.
var churnCase = clusterCase{"churn: low gangs of 4, high gangs of 2 on 16 nodes: no gang broken, no eviction for nothing", func(t *testing.T, c *cluster) {
	ns := c.preemptionNamespace(t)
	c.addNodes(t, ns, 16, "1")
	w := c.watchEvictions(t, ns)
	c.createWorkload(t, ns, "low", podGroup{name: "workers", minCount: 4})
	c.createWorkload(t, ns, "high", podGroup{name: "workers", minCount: 2})
	c.createWorkload(t, ns, "huge", podGroup{name: "workers", minCount: 20})
	var live []string
	deadline := time.Now().Add(preemptionChurn)
	for i := 0; time.Now().Before(deadline); i++ {
		switch {
		case i%10 == 9:
			c.createPriorityGangKey(t, ns, "huge", fmt.Sprintf("x%d", i), 20, highPriority)
		case i%3 == 2:
			c.createPriorityGangKey(t, ns, "high", fmt.Sprintf("h%d", i), 2, highPriority)
		default:
			c.createPriorityGangKey(t, ns, "low", fmt.Sprintf("l%d", i), 4, lowPriority)
		}
		live = append(live, fmt.Sprintf("%d", i))
		if i%4 == 3 && len(live) > 4 {
			// An old gang finishes.
			for _, prefix := range []string{"l", "h", "x"} {
				c.deletePrefix(t, ns, prefix+live[0])
			}
			live = live[1:]
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	w.check(t)
}}

func init() { preemptionCases = append(preemptionCases, churnCase) }

func (c *cluster) createPriorityGangKey(t *testing.T, ns, workload, prefix string, n int, class string) {
	t.Helper()
	for i := 0; i < n; i++ {
		c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", prefix, i), workload: workload, podGroup: "workers", replicaKey: prefix, priorityClass: class})
	}
}

// deletePrefix deletes the pods of a gang, if any are left.
func (c *cluster) deletePrefix(t *testing.T, ns, prefix string) {
	t.Helper()
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if strings.HasPrefix(p.Name, prefix+"-") {
			_ = c.client.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
}

// evictionWatcher records, from the pods' updates, every preemption victim
// (its node, priority, gang prefix) and every binding (node, priority, time).
type evictionWatcher struct {
	mu       sync.Mutex
	evicted  []eviction
	bindings map[string][]binding
	// boundOf counts, per gang prefix, the members that were ever bound.
	boundOf map[string]map[string]bool
}

type eviction struct {
	pod, gang, node string
	priority        int32
	at              time.Time
}

type binding struct {
	priority int32
	at       time.Time
}

func (c *cluster) watchEvictions(t *testing.T, ns string) *evictionWatcher {
	w := &evictionWatcher{bindings: map[string][]binding{}, boundOf: map[string]map[string]bool{}}
	seen := map[string]bool{}
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(ns))
	record := func(obj interface{}) {
		pod, ok := obj.(*v1.Pod)
		if !ok || pod.Spec.NodeName == "" {
			return
		}
		prio := ptr.Deref(pod.Spec.Priority, 0)
		gangPrefix := pod.Name[:strings.LastIndexByte(pod.Name, '-')]
		w.mu.Lock()
		defer w.mu.Unlock()
		key := string(pod.UID)
		if !seen[key] {
			seen[key] = true
			w.bindings[pod.Spec.NodeName] = append(w.bindings[pod.Spec.NodeName], binding{priority: prio, at: time.Now()})
			if w.boundOf[gangPrefix] == nil {
				w.boundOf[gangPrefix] = map[string]bool{}
			}
			w.boundOf[gangPrefix][pod.Name] = true
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == v1.DisruptionTarget && cond.Reason == v1.PodReasonPreemptionByScheduler && !seen["evicted/"+key] {
				seen["evicted/"+key] = true
				w.evicted = append(w.evicted, eviction{pod: pod.Name, gang: gangPrefix, node: pod.Spec.NodeName, priority: prio, at: time.Now()})
			}
		}
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj interface{}) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	return w
}

// check fails for a gang some but not all of whose bound members were
// evicted, and for a victim gang (or pod) after whose eviction no
// higher-priority pod bound on any of the nodes it was evicted from: an
// eviction for nothing. A whole gang evicted for a smaller one frees more
// nodes than the preemptor takes; those are the price of not breaking it.
func (w *evictionWatcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	byGang := map[string][]eviction{}
	for _, e := range w.evicted {
		byGang[e.gang] = append(byGang[e.gang], e)
	}
	for g, evictions := range byGang {
		if bound := len(w.boundOf[g]); len(evictions) != bound {
			t.Errorf("gang %s: %d of its %d bound members evicted: broken", g, len(evictions), bound)
		}
		followed := false
		for _, e := range evictions {
			for _, b := range w.bindings[e.node] {
				if b.at.After(e.at) && b.priority > e.priority {
					followed = true
				}
			}
		}
		if !followed {
			t.Errorf("gang %s was evicted and no higher-priority pod followed on its nodes", g)
		}
	}
	t.Logf("%d pods evicted from %d gangs", len(w.evicted), len(byGang))
}
