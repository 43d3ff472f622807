package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	spclient "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned/typed/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// podGroupMode has the harness express a case's Workloads as scheduler-plugins
// PodGroups: a Workload of one group is a PodGroup of its name and minCount,
// its permit-waiting-time annotation the PodGroup's scheduleTimeoutSeconds,
// and each replica key a PodGroup of its own, NAME-KEY (PodGroups have no
// replica keys), created with the first pod that names it. Pods carry the
// scheduling.x-k8s.io/pod-group label.
type podGroupMode struct {
	mu      sync.Mutex
	specs   map[string]spv1alpha1.PodGroupSpec
	created map[string]bool
}

func newPodGroupMode() *podGroupMode {
	return &podGroupMode{specs: map[string]spv1alpha1.PodGroupSpec{}, created: map[string]bool{}}
}

func podGroupName(workload, replicaKey string) string {
	if replicaKey == "" {
		return workload
	}
	return workload + "-" + replicaKey
}

func (m *podGroupMode) workload(t *testing.T, c *cluster, ns, name string, annotations map[string]string, groups ...podGroup) {
	t.Helper()
	if len(groups) != 1 {
		t.Fatalf("a PodGroup is one group; the case's Workload %s has %d", name, len(groups))
	}
	spec := spv1alpha1.PodGroupSpec{MinMember: groups[0].minCount}
	if v, ok := annotations[workloadref.PermitWaitingTimeAnnotation]; ok {
		seconds, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		spec.ScheduleTimeoutSeconds = ptr.To(int32(seconds))
	}
	m.mu.Lock()
	m.specs[ns+"/"+name] = spec
	m.created[ns+"/"+name] = true
	m.mu.Unlock()
	c.createPodGroup(t, ns, name, spec)
}

// ensurePodGroup creates the PodGroup of the pod's replica key, once.
func (c *cluster) ensurePodGroup(t *testing.T, ns string, p podSpec) {
	t.Helper()
	m, name := c.podGroups, podGroupName(p.workload, p.replicaKey)
	m.mu.Lock()
	spec, known := m.specs[ns+"/"+p.workload]
	create := known && !m.created[ns+"/"+name]
	m.created[ns+"/"+name] = true
	m.mu.Unlock()
	if create {
		c.createPodGroup(t, ns, name, spec)
	}
}

func (c *cluster) podGroupClient() spclient.SchedulerPluginsV1alpha1Interface {
	cfg := rest.CopyConfig(c.restConfig)
	cfg.ContentType = runtime.ContentTypeJSON
	return versioned.NewForConfigOrDie(cfg).SchedulerPluginsV1alpha1()
}

func (c *cluster) createPodGroup(t *testing.T, ns, name string, spec spv1alpha1.PodGroupSpec) {
	t.Helper()
	pg := &spv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if _, err := c.podGroupClient().PodGroups(ns).Create(context.Background(), pg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// installPodGroupCRDFromChart installs the PodGroup CRD as the chart renders
// it with podGroups.installCRD=true, and waits until it is served.
func installPodGroupCRDFromChart(t *testing.T, c *cluster) {
	t.Helper()
	// Not t.TempDir(): helm splits -f on commas, which subtests' names have.
	dir, err := os.MkdirTemp("", "podgroup-values")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(values, []byte("podGroups:\n  installCRD: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	crd := find(decodeObjects(t, helmTemplate(t, "wcs", "kube-system", values)), "CustomResourceDefinition")
	if crd == nil || crd.GetName() != "podgroups.scheduling.x-k8s.io" {
		t.Fatalf("the chart rendered no PodGroup CRD with podGroups.installCRD=true")
	}
	if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Errorf("the chart's PodGroup CRD is not kept on uninstall: %v", crd.GetAnnotations())
	}
	var typed apiextensionsv1.CustomResourceDefinition
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(crd.Object, &typed); err != nil {
		t.Fatal(err)
	}
	client := apiextensionsclient.NewForConfigOrDie(c.restConfig).ApiextensionsV1().CustomResourceDefinitions()
	if _, err := client.Create(context.Background(), &typed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.podGroupClient().PodGroups("default").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("PodGroups never served: %v", err)
	}
}

// TestPodGroups runs scheduler-plugins PodGroups, the CRD installed from the
// chart, on an API server without the alpha Workload API (the shipped gates):
// the gang lifecycle cases as PodGroups (one table, three sources with
// TestWorkloadCoscheduling and TestPortableMode), and what is PodGroups' own.
func TestPodGroups(t *testing.T) {
	c := startCluster(t)
	installCRDs(t, c)
	installPodGroupCRDFromChart(t, c)
	c.startScheduler(t)
	c.podGroups = newPodGroupMode()
	for _, tc := range lifecycleCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
	c.podGroups = nil
	for _, tc := range podGroupCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
}

// labelled creates pods prefix-0..n-1 labelled into the PodGroup.
func (c *cluster) labelled(t *testing.T, ns, podGroup, prefix string, n int) []string {
	t.Helper()
	var names []string
	for i := 0; i < n; i++ {
		pod := c.podObject(ns, podSpec{name: fmt.Sprintf("%s-%d", prefix, i)})
		pod.Labels = map[string]string{spv1alpha1.PodGroupLabel: podGroup}
		if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, pod.Name)
	}
	return names
}

var podGroupCases = []clusterCase{
	{"the KubeRay-shaped and training-operator-shaped samples are placed as gangs", samplesCase},
	{"a gang of 4 by label on 3 nodes binds nothing, then 4/4 with a 4th node", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 3, "1")
		mon := c.monitorGangs(t, ns)
		c.createPodGroup(t, ns, "job", spv1alpha1.PodGroupSpec{MinMember: 4})
		members := c.labelled(t, ns, "job", "w", 4)
		c.waitEvent(t, ns, "w-0", "FailedScheduling", "rejected: member")
		// Its reservations went at once: a plain pod binds within seconds.
		c.createPod(t, ns, podSpec{name: "plain-0", cpu: "1"})
		c.waitBound(t, ns, 10*time.Second, "plain-0")
		c.deletePod(t, ns, "plain-0")
		if err := c.createNode(ns, ns+"-extra", "1"); err != nil {
			t.Fatal(err)
		}
		c.waitBound(t, ns, 30*time.Second, members...)
		mon.check(t)
	}},
	{"a missing PodGroup keeps its pods pending until it is created", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		members := c.labelled(t, ns, "late", "w", 2)
		note := c.waitEvent(t, ns, "w-0", workloadref.PodGroupMissing, `PodGroup "late"`)
		t.Logf("event: %s", note)
		c.stayUnbound(t, ns, 2*time.Second, members...)
		c.createPodGroup(t, ns, "late", spv1alpha1.PodGroupSpec{MinMember: 2})
		c.waitBound(t, ns, 30*time.Second, members...)
	}},
	{"status: phases and counts as kubectl get podgroups shows them", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createPodGroup(t, ns, "job", spv1alpha1.PodGroupSpec{MinMember: 2})
		c.waitPodGroupRow(t, ns, "job", "Pending 2 0 0 0")
		members := c.labelled(t, ns, "job", "w", 2)
		c.waitBound(t, ns, 30*time.Second, members...)
		// Bound, not running yet (no kubelet here).
		c.waitPodGroupRow(t, ns, "job", "Scheduling 2 0 0 0")
		c.setPhase(t, ns, v1.PodRunning, members...)
		c.waitPodGroupRow(t, ns, "job", "Running 2 2 0 0")
		c.setPhase(t, ns, v1.PodSucceeded, members...)
		c.waitPodGroupRow(t, ns, "job", "Finished 2 0 2 0")
		pg, err := c.podGroupClient().PodGroups(ns).Get(context.Background(), "job", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pg.Status.ScheduleStartTime.IsZero() {
			t.Errorf("no scheduleStartTime: %+v", pg.Status)
		}
	}},
	{"minResources larger than the cluster: not tried, the event names the shortfall", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createPodGroup(t, ns, "big", spv1alpha1.PodGroupSpec{MinMember: 2, MinResources: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("1000"), "example.com/gpu": resource.MustParse("4")}})
		members := c.labelled(t, ns, "big", "w", 2)
		note := c.waitEvent(t, ns, "big", "GangMinResourcesUnfit", "example.com/gpu: 4 wanted, 0 free")
		if !strings.Contains(note, "cpu: 1k wanted") {
			t.Errorf("the event does not name the CPU short: %s", note)
		}
		t.Logf("event: %s", note)
		// Nothing was reserved: the two nodes take two plain pods at once.
		c.createPod(t, ns, podSpec{name: "plain-0", cpu: "1"})
		c.createPod(t, ns, podSpec{name: "plain-1", cpu: "1"})
		c.waitBound(t, ns, 10*time.Second, "plain-0", "plain-1")
		c.stayUnbound(t, ns, time.Second, members...)
	}},
	{"a pod with portable annotations and the label follows the annotations, and is told", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "1")
		c.createPortableWorkload(t, ns, "job", nil, podGroup{name: "workers", minCount: 1})
		c.createPodGroup(t, ns, "job", spv1alpha1.PodGroupSpec{MinMember: 5})
		pod := c.podObject(ns, podSpec{name: "both-0", workload: "job", podGroup: "workers", portable: true})
		pod.Labels = map[string]string{spv1alpha1.PodGroupLabel: "job"}
		if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitBound(t, ns, 30*time.Second, "both-0")
		note := c.waitEvent(t, ns, "both-0", "GangReferenceIgnored", "label "+spv1alpha1.PodGroupLabel)
		t.Logf("event: %s", note)
	}},
	{"kubectl gang lists PodGroup gangs", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createPodGroup(t, ns, "job", spv1alpha1.PodGroupSpec{MinMember: 2})
		members := c.labelled(t, ns, "job", "w", 2)
		c.waitBound(t, ns, 30*time.Second, members...)
		out := c.kubectlGang(t, ns, "list", "-o", "wide")
		if !strings.Contains(out, "podgroup") || !strings.Contains(out, "gang(2)") || !strings.Contains(out, "2/2") {
			t.Errorf("kubectl gang list -o wide:\n%s", out)
		}
		if out := c.kubectlGang(t, ns, "list", "-o", "name"); strings.TrimSpace(out) != "gang.kubectl-gang.workload-coscheduling.io/job" {
			t.Errorf("kubectl gang list -o name: %q", out)
		}
		out = c.kubectlGang(t, ns, "describe", "job")
		if !strings.Contains(out, "PodGroup:   job") || !strings.Contains(out, "gang, minMember 2 (scheduler-plugins PodGroup, phase") {
			t.Errorf("kubectl gang describe job:\n%s", out)
		}
	}},
}

// waitPodGroupRow waits until `kubectl get podgroup NAME` shows the columns
// Phase, MinMember, Running, Succeeded and Failed as want (space-separated):
// the server's table, from the CRD's printer columns.
func (c *cluster) waitPodGroupRow(t *testing.T, ns, name, want string) {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		raw, err := c.client.Discovery().RESTClient().Get().AbsPath("/apis/scheduling.x-k8s.io/v1alpha1/namespaces", ns, "podgroups", name).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil || len(table.Rows) != 1 {
			return false, err
		}
		cells := map[string]interface{}{}
		for i, col := range table.ColumnDefinitions {
			cells[col.Name] = table.Rows[0].Cells[i]
		}
		got = fmt.Sprintf("%v %v %v %v %v", cells["Phase"], cells["MinMember"], cells["Running"], cells["Succeeded"], cells["Failed"])
		got = strings.ReplaceAll(strings.ReplaceAll(got, "<nil>", "0"), "  ", " ")
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("PodGroup %s/%s: want %q, the table shows %q", ns, name, want, got)
	}
}

// setPhase sets the pods' phase, as a kubelet would.
func (c *cluster) setPhase(t *testing.T, ns string, phase v1.PodPhase, names ...string) {
	t.Helper()
	for _, name := range names {
		pod, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = phase
		if _, err := c.client.CoreV1().Pods(ns).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPodGroupCRDInstalledLater starts the scheduler before the PodGroup CRD
// exists: labelled pods wait saying so, other pods schedule, and the gang is
// placed once the CRD is installed and its PodGroup created, without a
// restart.
func TestPodGroupCRDInstalledLater(t *testing.T) {
	c := startCluster(t)
	c.startScheduler(t)
	ns := c.namespace(t)
	c.addNodes(t, ns, 3, "1")
	members := c.labelled(t, ns, "job", "w", 2)
	note := c.waitEvent(t, ns, "w-0", workloadref.PodGroupAPINotServed, "manifests/podgroup-crd")
	t.Logf("event: %s", note)
	c.createPod(t, ns, podSpec{name: "plain-0"})
	c.waitBound(t, ns, 10*time.Second, "plain-0")

	installPodGroupCRDFromChart(t, c)
	c.createPodGroup(t, ns, "job", spv1alpha1.PodGroupSpec{MinMember: 2})
	// The plugin asks discovery again every 10s.
	c.waitBound(t, ns, 45*time.Second, append(members, "plain-0")...)
}

// The samples of what KubeRay and the training operator create are placed
// whole, each a gang of its PodGroup.
func samplesCase(t *testing.T, c *cluster) {
	ns := c.namespace(t)
	c.addNodes(t, ns, 4, "1")
	files, err := filepath.Glob(filepath.Join("..", "..", "manifests", "samples", "podgroups", "*.yaml"))
	if err != nil || len(files) != 2 {
		t.Fatalf("manifests/samples/podgroups: %v %v", files, err)
	}
	var pods []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeObjects(t, string(data))
		for _, o := range objs {
			o.SetNamespace(ns)
			if o.GetKind() == "Pod" {
				pods = append(pods, o.GetName())
				// Onto this case's nodes.
				if err := unstructured.SetNestedStringMap(o.Object, map[string]string{nodePoolLabel: ns}, "spec", "nodeSelector"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if unserved := c.apply(t, objs, false); len(unserved) > 0 {
			t.Fatalf("%s: kinds not served: %v", file, unserved)
		}
	}
	// 7 pods of 500m on 4 CPUs: both gangs fit, and bind whole.
	c.waitBound(t, ns, 30*time.Second, pods...)
	for _, pg := range []string{"raycluster-sample", "mnist"} {
		c.waitPodGroupRow(t, ns, pg, "Scheduling "+map[string]string{"raycluster-sample": "3", "mnist": "4"}[pg]+" 0 0 0")
	}
}
