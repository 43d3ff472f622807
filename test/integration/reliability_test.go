package integration

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	etcdtesting "k8s.io/apiserver/pkg/storage/etcd3/testserver"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/google/uuid"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

var soakDuration = flag.Duration("soak.duration", 45*time.Second, "how long TestReliability's churn soak runs (make test: the short form)")

// TestReliability runs the scheduler binary as separate processes, so that
// it can be killed, against one API server, and checks the gang invariants
// while it faults: no gang stays partially bound, no pod is bound twice, the
// gangs that fit complete, and the plugin's index empties.
func TestReliability(t *testing.T) {
	c := startCluster(t, workloadAPIFlags...)
	for _, tc := range []clusterCase{
		{"the scheduler starts before its API server answers", testStartBeforeAPIServer},
		{"SIGKILL while a gang waits at Permit: after a restart nothing is partial and the gangs complete", testKillAndRestart},
		{"two replicas: the leader is killed mid-run and the other takes over", testLeaderFailover},
		{"a Workload deleted while its gang waits at Permit: rolled back, then admitted once recreated", testWorkloadDeletedDuringAdmission},
		{"a node deleted after a member reserved it: the gang is rolled back and completes elsewhere", testNodeDeletedAfterReserve},
		{"a bind fails after the gang was admitted: the rest is retried at once and the gang completes", testBindFailure},
		{"churn soak: gangs, plain pods and nodes come and go", testChurnSoak},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
}

// schedulerProcess is bin/kube-scheduler running as its own process.
type schedulerProcess struct {
	cmd     *exec.Cmd
	port    int
	out     syncBuffer
	exited  chan struct{}
	started time.Time
}

func (p *schedulerProcess) output() string { return p.out.String() }

// startSchedulerProcess runs the binary with our profile, leader election on
// lease kube-system/<lease> with short timings (so that a killed leader is
// replaced in seconds), and /metrics open to the test. It is killed when t
// ends.
func (c *cluster) startSchedulerProcess(t *testing.T, lease string) *schedulerProcess {
	return c.startSchedulerProcessTimed(t, lease, "4s", "3s", "500ms")
}

// startSchedulerProcessTimed is startSchedulerProcess with the given lease
// duration, renew deadline and retry period.
func (c *cluster) startSchedulerProcessTimed(t *testing.T, lease, duration, renew, retry string) *schedulerProcess {
	t.Helper()
	bin := filepath.Join("..", "..", "bin", "kube-scheduler")
	cfg := map[string]interface{}{
		"apiVersion":       "kubescheduler.config.k8s.io/v1",
		"kind":             "KubeSchedulerConfiguration",
		"clientConnection": map[string]interface{}{"kubeconfig": c.kubeconfig, "qps": 200, "burst": 400},
		"leaderElection": map[string]interface{}{
			"leaderElect": true, "resourceName": lease, "resourceNamespace": "kube-system",
			"leaseDuration": duration, "renewDeadline": renew, "retryPeriod": retry,
		},
		"profiles": []interface{}{map[string]interface{}{
			"schedulerName": schedulerName,
			"plugins": map[string]interface{}{"multiPoint": map[string]interface{}{
				"enabled":  []interface{}{map[string]interface{}{"name": "WorkloadCoscheduling"}},
				"disabled": []interface{}{map[string]interface{}{"name": "PrioritySort"}, map[string]interface{}{"name": "GangScheduling"}},
			}},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &schedulerProcess{port: freePort(t), exited: make(chan struct{}), started: time.Now()}
	p.cmd = exec.Command(bin, "--config="+file, fmt.Sprintf("--secure-port=%d", p.port), "--v=2",
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v (make integration-test builds it)", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("scheduler %d output (last 4000 bytes):\n%s", p.cmd.Process.Pid, tail(p.output(), 4000))
		}
	})
	waitHTTPSOK(t, fmt.Sprintf("https://127.0.0.1:%d/healthz", p.port), 60*time.Second)
	return p
}

// kill sends SIGKILL: no shutdown code runs, as when a node dies.
func (p *schedulerProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *schedulerProcess) isLeader() bool {
	return strings.Contains(p.output(), "Successfully acquired lease")
}

// metric reads one sample of the process's /metrics, written as in the
// exposition format (name{label="value"}); 0 when absent.
func (p *schedulerProcess) metric(t *testing.T, sample string) float64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the scheduler's self-signed serving certificate
	}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", p.port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if value, ok := strings.CutPrefix(line, sample+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
			return v
		}
	}
	return 0
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// invariants watches a namespace's pods and records every breach of the gang
// invariants: a gang partially bound for longer than binding takes, a pod
// bound to one node and then another. minCounts come from the Workloads.
type invariants struct {
	c       *cluster
	ns      string
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	nodes   map[string]string // pod UID → first node seen
	rebound []string
	// longest partial state seen, and of which gang
	longest      time.Duration
	longestWhich string
	admitted     map[gang.Key]bool
}

func (c *cluster) watchInvariants(t *testing.T, ns string) *invariants {
	inv := &invariants{c: c, ns: ns, stop: make(chan struct{}), done: make(chan struct{}),
		nodes: map[string]string{}, admitted: map[gang.Key]bool{}}
	go inv.run()
	t.Cleanup(inv.halt)
	return inv
}

func (inv *invariants) run() {
	defer close(inv.done)
	partialSince := map[gang.Key]time.Time{}
	for {
		select {
		case <-inv.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		ctx := context.Background()
		workloads, err := inv.c.client.SchedulingV1alpha1().Workloads(inv.ns).List(ctx, metav1ListAll)
		if err != nil {
			continue
		}
		pods, err := inv.c.client.CoreV1().Pods(inv.ns).List(ctx, metav1ListAll)
		if err != nil {
			continue
		}
		minCounts := map[gang.Key]int{}
		bound := map[gang.Key]int{}
		for _, p := range pods.Items {
			key, ok := gang.KeyOf(&p)
			if !ok {
				continue
			}
			for _, w := range workloads.Items {
				if w.Name != key.Workload {
					continue
				}
				for _, g := range w.Spec.PodGroups {
					if g.Name == key.PodGroup && g.Policy.Gang != nil {
						minCounts[key] = int(g.Policy.Gang.MinCount)
					}
				}
			}
			if p.Spec.NodeName != "" {
				bound[key]++
			}
		}
		now := time.Now()
		inv.mu.Lock()
		for _, p := range pods.Items {
			if p.Spec.NodeName == "" {
				continue
			}
			if first, ok := inv.nodes[string(p.UID)]; !ok {
				inv.nodes[string(p.UID)] = p.Spec.NodeName
			} else if first != p.Spec.NodeName {
				inv.rebound = append(inv.rebound, fmt.Sprintf("%s: %s then %s", p.Name, first, p.Spec.NodeName))
			}
		}
		for key, min := range minCounts {
			n := bound[key]
			if n >= min {
				inv.admitted[key] = true
			}
			if n == 0 || n >= min {
				delete(partialSince, key)
				continue
			}
			if _, ok := partialSince[key]; !ok {
				partialSince[key] = now
			}
			if d := now.Sub(partialSince[key]); d > inv.longest {
				inv.longest, inv.longestWhich = d, fmt.Sprintf("%s (%d/%d bound)", key, n, min)
			}
		}
		inv.mu.Unlock()
	}
}

func (inv *invariants) halt() {
	select {
	case <-inv.stop:
	default:
		close(inv.stop)
	}
	<-inv.done
}

// check stops the watcher and fails on any breach; it returns how many gangs
// were seen admitted.
func (inv *invariants) check(t *testing.T) int {
	t.Helper()
	inv.halt()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t.Logf("invariants: %d gangs admitted, %d bound pods watched, longest partial state %v %s, pods bound twice: %d",
		len(inv.admitted), len(inv.nodes), inv.longest.Round(time.Millisecond), inv.longestWhich, len(inv.rebound))
	if inv.longest > partialLimit {
		t.Errorf("gang %s stayed partially bound for %v", inv.longestWhich, inv.longest)
	}
	if len(inv.rebound) > 0 {
		t.Errorf("pods bound twice: %v", inv.rebound)
	}
	return len(inv.admitted)
}

// waitingAtPermit waits until the process reports a gang reserving at Permit.
func waitingAtPermit(t *testing.T, p *schedulerProcess) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return p.metric(t, `workload_coscheduling_gangs_waiting{state="reserving"}`) >= 1, nil
	})
	if err != nil {
		t.Fatalf("no gang waits at Permit: %v", err)
	}
}

func testStartBeforeAPIServer(t *testing.T, c *cluster) {
	// The scheduler is pointed at an address where nothing listens for its
	// first seconds (connections refused, as from a control plane that
	// boots); then a proxy to the API server opens there.
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := rest.CopyConfig(c.restConfig)
	cfg.Host = "https://" + addr
	late := *c
	late.kubeconfig = writeKubeconfig(t, cfg)
	opened := make(chan struct{})
	time.AfterFunc(5*time.Second, func() {
		defer close(opened)
		startProxyOn(t, addr, c.restConfig.Host)
	})
	t.Cleanup(func() { <-opened })
	p := late.startSchedulerProcess(t, "reliability-early")
	ns := c.namespace(t)
	c.addNodes(t, ns, 2, "1")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createGang(t, ns, "job", "workers", "", "w", 2, "1")
	c.waitBound(t, ns, 30*time.Second, "w-0", "w-1")
	if !strings.Contains(p.output(), "Discovery failed; asking again") {
		t.Error("the scheduler never waited for the API server: the proxy did not hold it back")
	}
	c.deleteGang(t, ns, "w")
}

func testKillAndRestart(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 4, "1")
	inv := c.watchInvariants(t, ns)
	first := c.startSchedulerProcess(t, "reliability-restart")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	// Gang a: its second member never leaves its scheduling gate, so a-0 reserves a
	// node and waits at Permit. Gang b fits and binds.
	c.createPod(t, ns, podSpec{name: "a-0", workload: "job", podGroup: "workers", replicaKey: "a"})
	c.createPod(t, ns, podSpec{name: "a-1", workload: "job", podGroup: "workers", replicaKey: "a", gated: true})
	c.createGang(t, ns, "job", "workers", "b", "b", 2, "1")
	c.waitBound(t, ns, 30*time.Second, "b-0", "b-1")
	waitingAtPermit(t, first)
	c.deleteGang(t, ns, "b")

	first.kill()
	second := c.startSchedulerProcess(t, "reliability-restart")
	c.stayUnbound(t, ns, 2*time.Second, "a-0")
	// The gang gets a member this scheduler places: it completes.
	c.deletePod(t, ns, "a-1")
	c.createPod(t, ns, podSpec{name: "a-2", workload: "job", podGroup: "workers", replicaKey: "a"})
	c.waitBound(t, ns, 60*time.Second, "a-0", "a-2")
	inv.check(t)
	c.deleteGang(t, ns, "a")
	waitIndexEmpty(t, second)
}

func testLeaderFailover(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 6, "1")
	inv := c.watchInvariants(t, ns)
	replicas := []*schedulerProcess{c.startSchedulerProcess(t, "reliability-failover"), c.startSchedulerProcess(t, "reliability-failover")}
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3})
	killed := false
	for round := 0; round < 8; round++ {
		// Two gangs of 3 on 6 nodes: both fit. Half-way, the leader dies.
		a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
		c.createGang(t, ns, "job", "workers", a, a, 3, "1")
		c.createGang(t, ns, "job", "workers", b, b, 3, "1")
		if round == 4 {
			for _, p := range replicas {
				if p.isLeader() {
					t.Logf("killing the leader, pid %d", p.cmd.Process.Pid)
					p.kill()
					killed = true
					break
				}
			}
		}
		c.waitWholeGangs(t, ns, 2, 60*time.Second)
		c.deleteGang(t, ns, a)
		c.deleteGang(t, ns, b)
	}
	if !killed {
		t.Fatal("no replica became leader")
	}
	if n := inv.check(t); n != 16 {
		t.Errorf("%d gangs admitted, want 16", n)
	}
}

func testWorkloadDeletedDuringAdmission(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 2, "1")
	inv := c.watchInvariants(t, ns)
	p := c.startSchedulerProcess(t, "reliability-workload")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
	c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers", gated: true})
	waitingAtPermit(t, p)
	c.deleteWorkload(t, ns, "job")
	// The waiting member is rejected at once, its node released.
	c.waitEvent(t, ns, "w-0", "FailedScheduling", "was deleted")
	c.deletePod(t, ns, "w-1")
	c.createPod(t, ns, podSpec{name: "w-2", workload: "job", podGroup: "workers"})
	c.waitEvent(t, ns, "w-2", "WorkloadNotFound", `Workload "job"`)
	c.stayUnbound(t, ns, 2*time.Second, "w-0", "w-2")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.waitBound(t, ns, 30*time.Second, "w-0", "w-2")
	inv.check(t)
	c.deleteGang(t, ns, "w")
	waitIndexEmpty(t, p)
}

func testNodeDeletedAfterReserve(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 3, "1")
	inv := c.watchInvariants(t, ns)
	p := c.startSchedulerProcess(t, "reliability-node")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
	c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers", gated: true})
	waitingAtPermit(t, p)
	// Every node goes, the one w-0 reserved with them (the gang must not bind
	// to it), and two new ones come.
	for i := 0; i < 3; i++ {
		if err := c.client.CoreV1().Nodes().Delete(context.Background(), fmt.Sprintf("%s-node-%d", ns, i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 5; i++ {
		if err := c.createNode(ns, fmt.Sprintf("%s-node-%d", ns, i), "1"); err != nil {
			t.Fatal(err)
		}
	}
	c.deletePod(t, ns, "w-1")
	c.createPod(t, ns, podSpec{name: "w-2", workload: "job", podGroup: "workers"})
	c.waitBound(t, ns, 60*time.Second, "w-0", "w-2")
	nodes := map[string]bool{}
	for _, name := range []string{"w-0", "w-2"} {
		pod, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.client.CoreV1().Nodes().Get(context.Background(), pod.Spec.NodeName, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s was bound to node %s: %v", name, pod.Spec.NodeName, err)
		}
		nodes[pod.Spec.NodeName] = true
	}
	if n := p.metric(t, `workload_coscheduling_gang_attempts_total{result="node_deleted"}`); n != 1 {
		t.Errorf("%v attempts rolled back for a deleted node, want 1", n)
	}
	inv.check(t)
	c.deleteGang(t, ns, "w")
	waitIndexEmpty(t, p)
}

func testBindFailure(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	bad := ns + "-node-bad"
	// The API server refuses any binding to the node "bad": a
	// ValidatingAdmissionPolicy on pods/binding, evaluated in the server.
	denyBindings(t, c, ns, bad)
	c.addNodes(t, ns, 1, "1")
	if err := c.createNode(ns, bad, "1"); err != nil {
		t.Fatal(err)
	}
	p := c.startSchedulerProcess(t, "reliability-bind")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createGang(t, ns, "job", "workers", "", "w", 2, "1")
	waitMetricOf(t, p, `workload_coscheduling_gang_attempts_total{result="bind_failure"}`, 1)
	// The member whose binding failed goes again without the gang's 10s
	// backoff: only the framework's per-pod backoff (1s after a first
	// failure) stands before its next binding, refused again here.
	start := time.Now()
	waitMetricOf(t, p, `workload_coscheduling_gang_attempts_total{result="bind_failure"}`, 2)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the member whose binding failed was tried again after %v; the gang backed off", took)
	}
	// One member is bound, the other failed to bind and cannot: the node goes,
	// as a node that failed, and another comes. The gang completes without
	// waiting out a backoff.
	if err := c.client.CoreV1().Nodes().Delete(context.Background(), bad, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.createNode(ns, ns+"-node-1", "1"); err != nil {
		t.Fatal(err)
	}
	c.waitBound(t, ns, 30*time.Second, "w-0", "w-1")
	for _, name := range []string{"w-0", "w-1"} {
		pod, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName == bad {
			t.Errorf("pod %s is bound to %s, whose bindings the API server refuses", name, bad)
		}
	}
	c.deleteGang(t, ns, "w")
	waitIndexEmpty(t, p)
}

// denyBindings makes the API server refuse to bind pods of the namespace to
// the node.
func denyBindings(t *testing.T, c *cluster, ns, node string) {
	t.Helper()
	ctx := context.Background()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/binding"}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("object.target.name != %q", node),
				Message:    "bindings to " + node + " are refused (test fault)",
			}},
		},
	}
	if _, err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        ns,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	if _, err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, ns, metav1.DeleteOptions{})
		_ = c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	// The policy takes effect once the server's admission has loaded it:
	// probe with a dry-run binding of a pod that does not exist yet.
	probe := c.createPod(t, ns, podSpec{name: "probe-0", scheduler: "nobody"})
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.client.CoreV1().Pods(ns).Bind(ctx, &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: probe.Name},
			Target:     v1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "test fault"), nil
	})
	if err != nil {
		t.Fatalf("the binding policy never took effect: %v", err)
	}
	c.deletePod(t, ns, probe.Name)
}

// waitMetricOf waits until the process's sample reaches at least want.
func waitMetricOf(t *testing.T, p *schedulerProcess, sample string, want float64) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return p.metric(t, sample) >= want, nil
	})
	if err != nil {
		t.Fatalf("%s never reached %v (it is %v)", sample, want, p.metric(t, sample))
	}
}

func testChurnSoak(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 8, "1")
	inv := c.watchInvariants(t, ns)
	p := c.startSchedulerProcess(t, "reliability-soak")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3}, podGroup{name: "pairs", minCount: 2})
	heapBefore := p.metric(t, "go_memstats_heap_alloc_bytes")
	rng := rand.New(rand.NewSource(1))
	deadline := time.Now().Add(*soakDuration)
	live := map[string]bool{}
	extraNodes, gangs, plain := 0, 0, 0
	for i := 0; time.Now().Before(deadline); i++ {
		switch r := rng.Intn(10); {
		case r < 4: // a gang of 3 or 2
			name := fmt.Sprintf("g%d", i)
			group, size := "workers", 3
			if r%2 == 0 {
				group, size = "pairs", 2
			}
			c.createGang(t, ns, "job", group, name, name, size, "1")
			live[name] = true
			gangs++
		case r < 6: // a plain pod
			name := fmt.Sprintf("p%d-0", i)
			c.createPod(t, ns, podSpec{name: name, cpu: "1"})
			live[fmt.Sprintf("p%d", i)] = true
			plain++
		case r < 9 && len(live) > 0: // something finishes
			for name := range live {
				c.deleteGang(t, ns, name)
				delete(live, name)
				break
			}
		default: // a node comes or goes
			if rng.Intn(2) == 0 {
				if err := c.createNode(ns, fmt.Sprintf("%s-extra-%d", ns, i), "1"); err != nil {
					t.Fatal(err)
				}
				extraNodes++
			} else if extraNodes > 0 {
				nodes, err := c.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: nodePoolLabel + "=" + ns})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range nodes.Items {
					if strings.Contains(n.Name, "-extra-") {
						if err := c.client.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{}); err != nil {
							t.Fatal(err)
						}
						extraNodes--
						break
					}
				}
			}
		}
		time.Sleep(time.Duration(100+rng.Intn(300)) * time.Millisecond)
	}
	// Progress: once the churn stops and the plain pods are gone, at least
	// two of the gangs left fit on the 8 nodes: some must be admitted.
	var waiting []string
	for name := range live {
		if strings.HasPrefix(name, "p") {
			c.deleteGang(t, ns, name)
		} else {
			waiting = append(waiting, name)
		}
	}
	if want := min(len(waiting), 2); want > 0 {
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			whole := 0
			counts := c.gangCounts(t, ns)
			for _, name := range waiting {
				if n := counts[name]; n != nil && n.bound == len(n.names) {
					whole++
				}
			}
			return whole >= want, nil
		})
		if err != nil {
			t.Errorf("after the churn, fewer than %d of the gangs left were admitted: %s", want, c.describeGangs(t, ns))
		}
	}
	for _, name := range waiting {
		c.deleteGang(t, ns, name)
	}
	admitted := inv.check(t)
	rollbacks := p.metric(t, `workload_coscheduling_gang_attempts_total{result="rejected_in_postfilter"}`) +
		p.metric(t, `workload_coscheduling_gang_attempts_total{result="node_deleted"}`) +
		p.metric(t, `workload_coscheduling_gang_attempts_total{result="member_deleted"}`) +
		p.metric(t, `workload_coscheduling_gang_attempts_total{result="permit_timeout"}`)
	t.Logf("churn soak over %v: %d gangs and %d plain pods created, %d gangs admitted, %v rolled back attempts",
		*soakDuration, gangs, plain, admitted, rollbacks)
	if admitted == 0 {
		t.Error("no gang was admitted during the soak")
	}
	waitIndexEmpty(t, p)
	// Memory returns near where it started once the pods are gone. The heap
	// moves with the garbage collector's pace, so the bound is loose: it
	// catches state kept per gang or per pod, not noise.
	heapAfter := p.metric(t, "go_memstats_heap_alloc_bytes")
	t.Logf("scheduler heap: %.1f MiB before the soak, %.1f MiB after", heapBefore/(1<<20), heapAfter/(1<<20))
	if heapBefore == 0 || heapAfter > 2*heapBefore+64<<20 {
		t.Errorf("the scheduler's heap grew from %.0f to %.0f bytes over the soak", heapBefore, heapAfter)
	}
}

// waitIndexEmpty waits until the scheduler's index holds no gang: nothing
// leaks once the pods are gone.
func waitIndexEmpty(t *testing.T, p *schedulerProcess) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return p.metric(t, "workload_coscheduling_gangs_tracked") == 0, nil
	})
	if err != nil {
		t.Errorf("the plugin's index still tracks %v gangs after every pod was deleted", p.metric(t, "workload_coscheduling_gangs_tracked"))
	}
}

// TestAPIServerRestart restarts the API server (etcd kept) under a running
// scheduler process: it reconnects, and the gangs it was placing, and those
// that come after, complete whole. The scheduler reaches the server through a
// TCP proxy, since a restarted test server listens on another port, and with
// a serving certificate and a token that outlive the server.
func TestAPIServerRestart(t *testing.T) {
	c, restart := startRestartableCluster(t)
	ns := c.namespace(t)
	c.addNodes(t, ns, 6, "1")
	inv := c.watchInvariants(t, ns)
	// kube-scheduler's default lease timings: a leader that cannot renew for
	// renewDeadline (10s) exits, to be restarted by its Deployment; the API
	// server here is back sooner.
	p := c.startSchedulerProcessTimed(t, "reliability-apiserver", "15s", "10s", "2s")
	c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
	c.createGang(t, ns, "job", "workers", "a", "a", 2, "1")
	c.waitBound(t, ns, 30*time.Second, "a-0", "a-1")
	// Gang b waits at Permit for a gated member when the server goes.
	c.createPod(t, ns, podSpec{name: "b-0", workload: "job", podGroup: "workers", replicaKey: "b"})
	c.createPod(t, ns, podSpec{name: "b-1", workload: "job", podGroup: "workers", replicaKey: "b", gated: true})
	waitingAtPermit(t, p)

	restart()

	c.deletePod(t, ns, "b-1")
	c.createPod(t, ns, podSpec{name: "b-2", workload: "job", podGroup: "workers", replicaKey: "b"})
	c.createGang(t, ns, "job", "workers", "c", "c", 2, "1")
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts := c.gangCounts(t, ns)
		if counts["b"] != nil && counts["b"].bound == 2 && counts["c"] != nil && counts["c"].bound == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gangs b and c not bound a minute after the restart: %s", c.describeGangs(t, ns))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The three gangs were seen whole above; the watcher, whose requests
	// cross the restart too, checks nothing was partial or bound twice.
	inv.check(t)
	for _, g := range []string{"a", "b", "c"} {
		c.deleteGang(t, ns, g)
	}
	waitIndexEmpty(t, p)
}

// startRestartableCluster starts etcd and an API server reached through a
// proxy; restart stops the server and starts another on the same etcd.
func startRestartableCluster(t *testing.T) (*cluster, func()) {
	t.Helper()
	etcdClient := etcdtesting.RunEtcd(t, nil)
	storage := storagebackend.NewDefaultConfig(path.Join(uuid.New().String(), "registry"), nil)
	storage.Transport.ServerList = etcdClient.Endpoints()

	dir := t.TempDir()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	const token = "restart-admin-token"
	files := map[string][]byte{"apiserver.crt": certPEM, "apiserver.key": keyPEM,
		"tokens.csv": []byte(token + ",restart-admin,restart-admin,system:masters\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flags := append([]string{"--disable-admission-plugins=ServiceAccount",
		"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv")}, workloadAPIFlags...)

	server := kubeapiservertesting.StartTestServerOrDie(t, nil, flags, storage)
	proxy := startProxy(t, server.ClientConfig.Host)
	t.Cleanup(func() { server.TearDownFn() })

	// A request caught by the restart must not hang the test: a timeout.
	cfg := &rest.Config{Host: "https://" + proxy.addr, BearerToken: token, QPS: 500, Burst: 1000, Timeout: 10 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: certPEM, ServerName: "127.0.0.1"}}
	c := &cluster{client: kubernetes.NewForConfigOrDie(cfg), restConfig: cfg, kubeconfig: writeKubeconfig(t, cfg)}
	restart := func() {
		t.Helper()
		start := time.Now()
		// Clients lose their connections first, as when the process dies;
		// the old server then has none to drain.
		proxy.retarget("")
		server.TearDownFn()
		stopped := time.Now()
		server = kubeapiservertesting.StartTestServerOrDie(t, nil, flags, storage)
		proxy.retarget(server.ClientConfig.Host)
		t.Logf("API server restarted: down for %v (stopping took %v)", time.Since(start).Round(time.Millisecond),
			stopped.Sub(start).Round(time.Millisecond))
	}
	return c, restart
}

// tcpProxy forwards connections to the current API server and drops them
// all when it moves, as a restart does.
type tcpProxy struct {
	addr   string
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, host string) *tcpProxy {
	t.Helper()
	return startProxyOn(t, "127.0.0.1:0", host)
}

// startProxyOn is startProxy listening on addr.
func startProxyOn(t *testing.T, addr, host string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Error(err)
		return nil
	}
	p := &tcpProxy{addr: l.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.retarget(host)
	t.Cleanup(func() { l.Close(); p.retarget("") })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(in)
		}
	}()
	return p
}

// retarget points the proxy at host (https://addr) and closes every
// connection to the old one.
func (p *tcpProxy) retarget(host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = strings.TrimPrefix(host, "https://")
	for conn := range p.conns {
		conn.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) forward(in net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	out, err := net.Dial("tcp", target)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(out, in); out.Close() }()
	_, _ = io.Copy(in, out)
	in.Close()
}
