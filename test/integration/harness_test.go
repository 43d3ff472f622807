// Package integration runs the scheduler against real components started in
// the test process: embedded etcd, the real kube-apiserver and kube-scheduler
// built from manifests/scheduler-config.yaml with this project's registry.
// Nodes are API objects; nothing runs pods, so a pod is "scheduled" once it
// is bound.
package integration

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	etcdtesting "k8s.io/apiserver/pkg/storage/etcd3/testserver"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/configz"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	wcsclient "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned/typed/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/registry"
)

// schedulerName is the profile manifests/scheduler-config.yaml ships.
const schedulerName = "workload-coscheduling"

// shippedConfig is the scheduler configuration the project ships.
var shippedConfig = filepath.Join("..", "..", "manifests", "scheduler-config.yaml")

// cluster is a running API server with a client and a kubeconfig for it.
type cluster struct {
	client     kubernetes.Interface
	restConfig *rest.Config
	kubeconfig string
	// portable makes the helpers create portable Workloads (the CRD) and
	// pods that reference them by annotations.
	portable bool
	// podGroups makes them create scheduler-plugins PodGroups and pods
	// labelled into them (podGroupMode).
	podGroups *podGroupMode
}

// portableClient is a client of portable Workloads: JSON, which custom
// resources speak (the test server's config asks for protobuf).
func (c *cluster) portableClient() wcsclient.SchedulingV1alpha1Interface {
	cfg := rest.CopyConfig(c.restConfig)
	cfg.ContentType = runtime.ContentTypeJSON
	return versioned.NewForConfigOrDie(cfg).SchedulingV1alpha1()
}

// Flags of an API server that serves the Workload API and keeps spec.workloadRef.
var workloadAPIFlags = []string{
	"--feature-gates=GenericWorkload=true",
	"--runtime-config=scheduling.k8s.io/v1alpha1=true",
}

// startCluster starts etcd and a kube-apiserver with the given extra flags;
// both stop when t ends. The ServiceAccount admission plugin is off because no
// controller creates the default ServiceAccount here.
func startCluster(t *testing.T, flags ...string) *cluster {
	t.Helper()
	etcdClient := etcdtesting.RunEtcd(t, nil)
	storage := storagebackend.NewDefaultConfig(path.Join(uuid.New().String(), "registry"), nil)
	storage.Transport.ServerList = etcdClient.Endpoints()

	flags = append([]string{"--disable-admission-plugins=ServiceAccount"}, flags...)
	server := kubeapiservertesting.StartTestServerOrDie(t, nil, flags, storage)
	t.Cleanup(server.TearDownFn)

	cfg := rest.CopyConfig(server.ClientConfig)
	cfg.QPS, cfg.Burst = 500, 1000
	client := kubernetes.NewForConfigOrDie(cfg)
	return &cluster{client: client, restConfig: cfg, kubeconfig: writeKubeconfig(t, cfg)}
}

func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile, TLSServerName: cfg.ServerName}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// schedulerConfig returns the shipped configuration, pointed at the cluster
// and without leader election, as a file; edit may change the decoded YAML
// further (nil leaves it as shipped).
func (c *cluster) schedulerConfig(t *testing.T, edit func(cfg map[string]interface{})) string {
	t.Helper()
	raw, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	client, _ := cfg["clientConnection"].(map[string]interface{})
	if client == nil {
		client = map[string]interface{}{}
	}
	client["kubeconfig"] = c.kubeconfig
	cfg["clientConnection"] = client
	cfg["leaderElection"] = map[string]interface{}{"leaderElect": false}
	if edit != nil {
		edit(cfg)
	}
	return c.writeConfig(t, cfg)
}

// writeConfig writes a scheduler configuration to a file.
func (c *cluster) writeConfig(t *testing.T, cfg map[string]interface{}) string {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "scheduler-config.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// setupScheduler builds the scheduler as the binary does from a config file,
// and returns the error the binary would stop with, or a function that runs
// the scheduler until ctx ends.
func setupScheduler(ctx context.Context, configFile string) (func() error, error) {
	opts := options.NewOptions()
	opts.ConfigFile = configFile
	opts.SecureServing.BindPort = 0 // no serving: several schedulers run in one process
	cc, sched, err := app.Setup(ctx, opts, registry.Options()...)
	if err != nil {
		return nil, err
	}
	return func() error {
		// Run registers the configuration globally, once per process; an
		// earlier scheduler of this test binary registered it already.
		configz.Delete("componentconfig")
		return app.Run(ctx, cc, sched)
	}, nil
}

// startScheduler runs the shipped scheduler configuration against the
// cluster until t ends.
func (c *cluster) startScheduler(t *testing.T) {
	t.Helper()
	c.runScheduler(t, c.schedulerConfig(t, nil))
}

// runScheduler runs the scheduler from a configuration file, with the
// feature gate defaults the binary applies, until t ends.
//
// It cannot run with the shipped flags exactly where the cluster serves the
// built-in Workload API: kube-apiserver runs in this process and reads the
// same process-wide GenericWorkload gate on every pod write (off, it drops
// spec.workloadRef), so the scheduler sees the gate on, which the shipped
// binary does not set. Portable-Workload clusters have it off. TestChart and
// e2e-local run the binary with the chart's own flags.
func (c *cluster) runScheduler(t *testing.T, configFile string) {
	t.Helper()
	featuregatetesting.SetFeatureGatesDuringTest(t, utilfeature.DefaultFeatureGate, registry.FeatureGateDefaults)
	runSchedulerWithGates(t, configFile)
}

// runSchedulerWithGates runs the scheduler from a configuration file with the
// process's feature gates as they are, until t ends.
func runSchedulerWithGates(t *testing.T, configFile string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	run, err := setupScheduler(ctx, configFile)
	if err != nil {
		cancel()
		t.Fatalf("scheduler setup: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(); err != nil && ctx.Err() == nil {
			t.Errorf("the scheduler stopped: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// namespace creates a namespace for one test case. Each case also makes its
// own nodes, labelled with the namespace's name, and its pods select them,
// so cases do not see each other's capacity.
func (c *cluster) namespace(t *testing.T) string {
	t.Helper()
	name := nonLabelChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 50 {
		name = name[len(name)-50:]
	}
	name = strings.Trim(name, "-") + "-" + uuid.New().String()[:6]
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No namespace controller runs: delete the pods now so they release their nodes.
		_ = c.client.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = c.client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: nodePoolLabel + "=" + name})
	})
	return name
}

var nonLabelChars = regexp.MustCompile(`[^a-z0-9]+`)

const nodePoolLabel = "test.workload-coscheduling.io/pool"

// addNodes creates n Ready nodes with the given CPU each, in the namespace's pool.
func (c *cluster) addNodes(t *testing.T, pool string, n int, cpu string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := c.createNode(pool, fmt.Sprintf("%s-node-%d", pool, i), cpu); err != nil {
			t.Fatal(err)
		}
	}
}

// createNode creates a Ready node without taints in the pool.
func (c *cluster) createNode(pool, name string, cpu string) error {
	return c.createLabelledNode(pool, name, cpu, nil)
}

// createLabelledNode creates a Ready node without taints in the pool, with
// more labels.
func (c *cluster) createLabelledNode(pool, name string, cpu string, labels map[string]string) error {
	ctx := context.Background()
	capacity := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse(cpu),
		v1.ResourceMemory: resource.MustParse("16Gi"),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{nodePoolLabel: pool}}}
	for k, v := range labels {
		node.Labels[k] = v
	}
	node, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	// Admission taints a new node not-ready; no node controller runs here
	// to lift the taint once the node reports Ready, so lift it now.
	node.Spec.Taints = nil
	if node, err = c.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}
	node.Status = v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
		Phase:       v1.NodeRunning,
	}
	_, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// podSpec describes a test pod: a CPU request, and optionally a workloadRef
// and another scheduler than ours.
type podSpec struct {
	name       string
	cpu        string
	workload   string
	podGroup   string
	replicaKey string
	scheduler  string
	// portable references the Workload by annotations whatever the
	// cluster's mode; both sets spec.workloadRef and the annotations.
	portable, both bool
	// priorityClass names a PriorityClass (see ensurePriorityClasses).
	priorityClass string
	// gated: a scheduling gate that nothing lifts keeps the pod out of
	// every scheduling cycle. It is still a live member of its gang (our
	// schedulerName), one that never reserves: its gang waits at Permit.
	gated bool
}

var metav1ListAll = metav1.ListOptions{}

func (c *cluster) createPod(t *testing.T, ns string, p podSpec) *v1.Pod {
	t.Helper()
	if c.podGroups != nil && p.workload != "" {
		c.ensurePodGroup(t, ns, p)
	}
	created, err := c.client.CoreV1().Pods(ns).Create(context.Background(), c.podObject(ns, p), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.workload != "" && !c.portable && !p.portable && c.podGroups == nil && created.Spec.WorkloadRef == nil {
		t.Fatalf("the API server dropped spec.workloadRef of pod %s: is its GenericWorkload gate on?", p.name)
	}
	return created
}

// podObject is the pod a podSpec describes, in the namespace's node pool.
func (c *cluster) podObject(ns string, p podSpec) *v1.Pod {
	cpu := p.cpu
	if cpu == "" {
		cpu = "1"
	}
	scheduler := p.scheduler
	if scheduler == "" {
		scheduler = schedulerName
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name},
		Spec: v1.PodSpec{
			SchedulerName: scheduler,
			NodeSelector:  map[string]string{nodePoolLabel: ns},
			Containers: []v1.Container{{
				Name:      "main",
				Image:     "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}},
			}},
		},
	}
	pod.Spec.PriorityClassName = p.priorityClass
	if p.gated {
		pod.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "test.workload-coscheduling.io/never"}}
	}
	if p.workload == "" {
		return pod
	}
	if c.podGroups != nil {
		pod.Labels = map[string]string{gang.PodGroupLabel: podGroupName(p.workload, p.replicaKey)}
		return pod
	}
	if c.portable || p.portable || p.both {
		pod.Annotations = map[string]string{gang.WorkloadAnnotation: p.workload, gang.PodGroupAnnotation: p.podGroup}
		if p.replicaKey != "" {
			pod.Annotations[gang.ReplicaKeyAnnotation] = p.replicaKey
		}
	}
	if !(c.portable || p.portable) || p.both {
		pod.Spec.WorkloadRef = &v1.WorkloadReference{Name: p.workload, PodGroup: p.podGroup, PodGroupReplicaKey: p.replicaKey}
	}
	return pod
}

// podGroup is a podGroup of a test Workload: minCount 0 means basic.
type podGroup struct {
	name     string
	minCount int32
}

func (c *cluster) createWorkload(t *testing.T, ns, name string, groups ...podGroup) {
	t.Helper()
	c.createWorkloadAnnotated(t, ns, name, nil, groups...)
}

func (c *cluster) createWorkloadAnnotated(t *testing.T, ns, name string, annotations map[string]string, groups ...podGroup) {
	t.Helper()
	w := &schedulingv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}}
	for _, g := range groups {
		pg := schedulingv1alpha1.PodGroup{Name: g.name}
		if g.minCount > 0 {
			pg.Policy.Gang = &schedulingv1alpha1.GangSchedulingPolicy{MinCount: g.minCount}
		} else {
			pg.Policy.Basic = &schedulingv1alpha1.BasicSchedulingPolicy{}
		}
		w.Spec.PodGroups = append(w.Spec.PodGroups, pg)
	}
	if c.podGroups != nil {
		c.podGroups.workload(t, c, ns, name, annotations, groups...)
		return
	}
	if c.portable {
		c.createPortableWorkload(t, ns, name, annotations, groups...)
		return
	}
	if _, err := c.client.SchedulingV1alpha1().Workloads(ns).Create(context.Background(), w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) createPortableWorkload(t *testing.T, ns, name string, annotations map[string]string, groups ...podGroup) {
	t.Helper()
	w := &wcsv1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}}
	for _, g := range groups {
		pg := wcsv1alpha1.PodGroup{Name: g.name}
		if g.minCount > 0 {
			pg.Policy.Gang = &wcsv1alpha1.GangSchedulingPolicy{MinCount: g.minCount}
		} else {
			pg.Policy.Basic = &wcsv1alpha1.BasicSchedulingPolicy{}
		}
		w.Spec.PodGroups = append(w.Spec.PodGroups, pg)
	}
	if _, err := c.portableClient().Workloads(ns).Create(context.Background(), w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) deleteWorkload(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	del := func() error {
		return c.client.SchedulingV1alpha1().Workloads(ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
	get := func() error {
		_, err := c.client.SchedulingV1alpha1().Workloads(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	}
	if c.portable {
		del = func() error { return c.portableClient().Workloads(ns).Delete(ctx, name, metav1.DeleteOptions{}) }
		get = func() error {
			_, err := c.portableClient().Workloads(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	if err := del(); err != nil {
		t.Fatal(err)
	}
	// Wait until it is gone, so that a Workload of the same name created next is a new object.
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return get() != nil, nil
	})
	if err != nil {
		t.Fatalf("Workload %s/%s not deleted: %v", ns, name, err)
	}
}

func (c *cluster) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
}

// boundPods returns the names of the namespace's pods that have a node.
func (c *cluster) boundPods(t *testing.T, ns string) map[string]string {
	t.Helper()
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]string{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			bound[p.Name] = p.Spec.NodeName
		}
	}
	return bound
}

// waitBound waits until exactly the named pods of the namespace are bound.
func (c *cluster) waitBound(t *testing.T, ns string, timeout time.Duration, names ...string) {
	t.Helper()
	var bound map[string]string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		bound = c.boundPods(t, ns)
		if len(bound) != len(names) {
			return false, nil
		}
		for _, n := range names {
			if _, ok := bound[n]; !ok {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("want bound exactly %v within %v, bound: %v", names, timeout, bound)
	}
}

// stayUnbound checks for the given time that none of the named pods binds.
func (c *cluster) stayUnbound(t *testing.T, ns string, d time.Duration, names ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		bound := c.boundPods(t, ns)
		for _, n := range names {
			if node, ok := bound[n]; ok {
				t.Fatalf("pod %s was bound to %s, want it pending", n, node)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitEvent waits for an event on the object (a pod, or a Workload for the
// gang's events) whose reason and note contain the given strings, and
// returns its note.
func (c *cluster) waitEvent(t *testing.T, ns, object, reason, noteContains string) string {
	t.Helper()
	var seen []string
	var note string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		events, err := c.client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("regarding.name", object).String(),
		})
		if err != nil {
			return false, err
		}
		seen = seen[:0]
		for _, e := range events.Items {
			seen = append(seen, e.Reason+": "+e.Note)
			if e.Reason == reason && strings.Contains(e.Note, noteContains) {
				note = e.Note
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no event %s containing %q on %s/%s; events: %q", reason, noteContains, ns, object, seen)
	}
	return note
}
