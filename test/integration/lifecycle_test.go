package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// lifecycleCases are the gang lifecycle: grouping in the queue, rollback,
// backoff and timeouts, under contention.
var lifecycleCases = []clusterCase{
	{"a gang that cannot fit releases its nodes at once", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 3, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 4})
		c.createGang(t, ns, "job", "workers", "", "w", 4, "1")
		c.waitEvent(t, ns, "w-0", "FailedScheduling", "rejected: member")
		// The Permit timeout is 60s: a plain pod binding within seconds shows
		// the gang let its reservations go.
		c.createPod(t, ns, podSpec{name: "plain", cpu: "1"})
		c.waitBound(t, ns, 10*time.Second, "plain")
	}},
	{"two interleaved gangs of 6 on 10 nodes: one binds, then the other; never part of one", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 10, "1")
		mon := c.monitorGangs(t, ns)
		for round := 0; round < 10; round++ {
			workload := fmt.Sprintf("job%d", round)
			c.createWorkload(t, ns, workload, podGroup{name: "workers", minCount: 6})
			a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
			for i := 0; i < 6; i++ {
				c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", a, i), cpu: "1", workload: workload, podGroup: "workers", replicaKey: a})
				c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", b, i), cpu: "1", workload: workload, podGroup: "workers", replicaKey: b})
			}
			first := c.waitWholeGangs(t, ns, 1, 30*time.Second)
			second := b
			if first[0] == b {
				second = a
			}
			c.deleteGang(t, ns, first[0])
			if got := c.waitWholeGangs(t, ns, 1, 30*time.Second); got[0] != second {
				t.Fatalf("round %d: bound %v after %s left, want %s", round, got, first[0], second)
			}
			c.deleteGang(t, ns, second)
			t.Logf("round %d: %s then %s", round, first[0], second)
		}
		mon.check(t)
	}},
	{"many small gangs competing for too little room: whole gangs only, and progress", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 8, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3})
		mon := c.monitorGangs(t, ns)
		pending := map[string]bool{}
		for g := 0; g < 6; g++ {
			name := fmt.Sprintf("g%d", g)
			c.createGang(t, ns, "job", "workers", name, name, 3, "1")
			pending[name] = true
		}
		// Room for two gangs of three at a time: the bound gangs finish (are
		// deleted) and the others must follow, two by two.
		for len(pending) > 0 {
			want := 2
			if len(pending) < want {
				want = len(pending)
			}
			bound := c.waitWholeGangs(t, ns, want, 30*time.Second)
			for _, g := range bound {
				if !pending[g] {
					t.Fatalf("gang %s bound twice", g)
				}
				delete(pending, g)
				c.deleteGang(t, ns, g)
			}
			t.Logf("bound %v, %d gangs still pending", bound, len(pending))
		}
		mon.check(t)
	}},
	{"fragmented capacity: the gang stays pending and backs off, other pods keep scheduling", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 4, "2")
		for i := 0; i < 4; i++ {
			c.createPod(t, ns, podSpec{name: fmt.Sprintf("filler-%d", i), cpu: "1"})
		}
		c.waitBound(t, ns, 30*time.Second, "filler-0", "filler-1", "filler-2", "filler-3")
		// 4 CPUs are free, one per node; the gang needs 2 nodes with 2 free.
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		c.createGang(t, ns, "job", "workers", "", "w", 2, "2")
		note := c.waitEvent(t, ns, "w-0", "FailedScheduling", "backing off for 10s")
		t.Logf("event: %s", note)
		c.createPod(t, ns, podSpec{name: "plain", cpu: "1"})
		c.waitBound(t, ns, 10*time.Second, "filler-0", "filler-1", "filler-2", "filler-3", "plain")
		c.stayUnbound(t, ns, 12*time.Second, "w-0", "w-1")
	}},
	{"an old gang that cannot fit does not hold back a newer one that fits", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createWorkload(t, ns, "old", podGroup{name: "workers", minCount: 3})
		c.createGang(t, ns, "old", "workers", "", "old", 3, "1")
		c.waitEvent(t, ns, "old-0", "FailedScheduling", "rejected: member")
		c.createWorkload(t, ns, "new", podGroup{name: "workers", minCount: 2})
		c.createGang(t, ns, "new", "workers", "", "new", 2, "1")
		c.waitBound(t, ns, 10*time.Second, "new-0", "new-1")
	}},
	{"a Workload's annotation sets its Permit timeout", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createWorkloadAnnotated(t, ns, "job", map[string]string{workloadref.PermitWaitingTimeAnnotation: "2"},
			podGroup{name: "workers", minCount: 2})
		// The second member is gated and never reserves: the
		// first waits at Permit for the Workload's 2s, not the default 60s.
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers", gated: true})
		note := c.waitEvent(t, ns, "w-0", "FailedScheduling", "timeout")
		t.Logf("event: %s", note)

		c.createWorkloadAnnotated(t, ns, "long", map[string]string{workloadref.PermitWaitingTimeAnnotation: "3600"},
			podGroup{name: "workers", minCount: 2})
		reason := "InvalidPermitWaitingTime"
		if c.podGroups != nil { // the annotation is the PodGroup's scheduleTimeoutSeconds
			reason = "InvalidScheduleTimeout"
		}
		note = c.waitEvent(t, ns, "long", reason, "15m0s is used")
		t.Logf("event: %s", note)
	}},
}

// createGang creates n members named prefix-0..prefix-(n-1).
func (c *cluster) createGang(t *testing.T, ns, workload, podGroup, replicaKey, prefix string, n int, cpu string) {
	t.Helper()
	for i := 0; i < n; i++ {
		c.createPod(t, ns, podSpec{name: fmt.Sprintf("%s-%d", prefix, i), cpu: cpu, workload: workload, podGroup: podGroup, replicaKey: replicaKey})
	}
}

// deleteGang deletes the pods named prefix-* and waits until they are gone.
func (c *cluster) deleteGang(t *testing.T, ns, prefix string) {
	t.Helper()
	for name := range c.gangCounts(t, ns)[prefix].names {
		c.deletePod(t, ns, name)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := c.gangCounts(t, ns)[prefix]; !ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pods of gang %s not deleted", prefix)
}

type gangCount struct {
	names map[string]bool
	bound int
}

// gangCounts groups the namespace's pods by the part of their name before the
// first '-', the way these tests name gang members.
func (c *cluster) gangCounts(t *testing.T, ns string) map[string]*gangCount {
	t.Helper()
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1ListAll)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]*gangCount{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		g := p.Name[:strings.IndexByte(p.Name, '-')]
		if counts[g] == nil {
			counts[g] = &gangCount{names: map[string]bool{}}
		}
		counts[g].names[p.Name] = true
		if p.Spec.NodeName != "" {
			counts[g].bound++
		}
	}
	return counts
}

// waitWholeGangs waits until exactly want gangs are bound, each wholly, and
// the others not at all, and stays so for a second; it returns the bound
// gangs, sorted.
func (c *cluster) waitWholeGangs(t *testing.T, ns string, want int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var stableSince time.Time
	var last string
	for time.Now().Before(deadline) {
		var whole []string
		settled := true
		for g, n := range c.gangCounts(t, ns) {
			switch n.bound {
			case 0:
			case len(n.names):
				whole = append(whole, g)
			default:
				settled = false
			}
		}
		sort.Strings(whole)
		if now := fmt.Sprint(whole); settled && len(whole) == want {
			if now != last {
				stableSince, last = time.Now(), now
			} else if time.Since(stableSince) > time.Second {
				return whole
			}
		} else {
			last = ""
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("want %d whole gangs bound and no partial one within %v; now: %v", want, timeout, c.describeGangs(t, ns))
	return nil
}

func (c *cluster) describeGangs(t *testing.T, ns string) string {
	var parts []string
	for g, n := range c.gangCounts(t, ns) {
		parts = append(parts, fmt.Sprintf("%s %d/%d bound", g, n.bound, len(n.names)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// gangMonitor polls the namespace and records how long any gang stays
// partially bound. Binding a complete gang takes a moment, one member after
// another; a gang partial for longer than partialLimit is a broken promise.
type gangMonitor struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	longest time.Duration
	which   string
}

const partialLimit = 5 * time.Second

func (c *cluster) monitorGangs(t *testing.T, ns string) *gangMonitor {
	m := &gangMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		partialSince := map[string]time.Time{}
		for {
			select {
			case <-m.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1ListAll)
			if err != nil {
				continue
			}
			counts := map[string][2]int{}
			for _, p := range pods.Items {
				g := p.Name[:strings.IndexByte(p.Name, '-')]
				n := counts[g]
				n[0]++
				if p.Spec.NodeName != "" {
					n[1]++
				}
				counts[g] = n
			}
			now := time.Now()
			for g, n := range counts {
				if n[1] == 0 || n[1] == n[0] {
					delete(partialSince, g)
					continue
				}
				if _, ok := partialSince[g]; !ok {
					partialSince[g] = now
				}
				if d := now.Sub(partialSince[g]); d > m.longest {
					m.mu.Lock()
					m.longest, m.which = d, fmt.Sprintf("%s (%d/%d bound)", g, n[1], n[0])
					m.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { m.halt() })
	return m
}

func (m *gangMonitor) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// check stops the monitor and fails if a gang stayed partially bound.
func (m *gangMonitor) check(t *testing.T) {
	t.Helper()
	m.halt()
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Logf("longest partially bound state seen: %v %s", m.longest, m.which)
	if m.longest > partialLimit {
		t.Fatalf("gang %s stayed partially bound for %v", m.which, m.longest)
	}
}
