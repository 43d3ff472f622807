// Package localcluster brings up a Kubernetes 1.35 control plane on this
// machine with nothing but binaries the repository builds: KWOK's kwokctl
// runs etcd, kube-apiserver (with the Workload API on), kube-controller-manager,
// the stock kube-scheduler as the default scheduler, our scheduler as the
// second one with the chart's rendered configuration and flags, and the kwok controller,
// which simulates the nodes: pods bound to them turn Running, and Job pods
// Succeeded. kwokctl supervises the processes; Down removes them and the
// working directory.
package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Options say where the binaries are and what cluster to make.
type Options struct {
	// Name of the kwokctl cluster.
	Name string
	// Root is the repository: binaries are read from Root/bin (make
	// local-tools builds them) and the chart from Root/charts.
	Root string
	// Workdir holds the cluster's state, logs and kubeconfig; Down removes
	// it. Defaults to Root/.local/<Name>.
	Workdir string
	// Nodes is how many simulated nodes to create, each with NodeCPU cores
	// and NodeMemory of allocatable resources.
	Nodes      int
	NodeCPU    string
	NodeMemory string
	// Log receives kwokctl's output.
	Log io.Writer

	defaultWorkdir bool
}

// Defaults is the demo's cluster: four nodes of 8 CPUs and 32 GiB.
func Defaults(root string) Options {
	return Options{Name: "workload-coscheduling", Root: root, Nodes: 4, NodeCPU: "8", NodeMemory: "32Gi", Log: io.Discard}
}

// KubeVersion is the version of every control-plane binary.
const KubeVersion = "v1.35.4"

// SchedulerName is the profile of our scheduler in the chart's configuration.
const SchedulerName = "workload-coscheduling"

// leaseName is the chart's leader-election Lease of our scheduler: it is held
// once the scheduler has started.
const leaseName = "workload-coscheduling"

// Cluster is a running local cluster.
type Cluster struct {
	Options
	// Kubeconfig is the admin kubeconfig of the cluster.
	Kubeconfig string
}

func (o *Options) complete() {
	if o.Workdir == "" {
		o.Workdir, o.defaultWorkdir = filepath.Join(o.Root, ".local", o.Name), true
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

func (o *Options) bin(name string) string { return filepath.Join(o.Root, "bin", name) }

// KubeconfigPath is where kwokctl writes the cluster's kubeconfig.
func (o Options) KubeconfigPath() string {
	o.complete()
	return filepath.Join(o.Workdir, "clusters", o.Name, "kubeconfig.yaml")
}

// Up creates the cluster and returns once its nodes are Ready and both
// schedulers run. A cluster of the same name left from an earlier run is
// deleted first. On error nothing is left running.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	opts.complete()
	for _, b := range []string{"kwokctl", "kwok", "helm", "kube-scheduler", "k8s/etcd", "k8s/kube-apiserver",
		"k8s/kube-controller-manager", "k8s/default-scheduler", "k8s/kubectl"} {
		if _, err := os.Stat(opts.bin(b)); err != nil {
			return nil, fmt.Errorf("%s is missing: run make local-tools first (%w)", opts.bin(b), err)
		}
	}
	if err := Down(ctx, opts); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Workdir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Options: opts, Kubeconfig: opts.KubeconfigPath()}
	if err := c.create(ctx); err != nil {
		return nil, errors.Join(err, Down(context.WithoutCancel(ctx), opts))
	}
	return c, nil
}

func (c *Cluster) create(ctx context.Context) error {
	schedulerArgs, err := c.renderScheduler(ctx, filepath.Join(c.Workdir, "scheduler-config.yaml"))
	if err != nil {
		return err
	}
	kwokConfig := filepath.Join(c.Workdir, "kwokctl.yaml")
	if err := os.WriteFile(kwokConfig, c.kwokctlConfiguration(schedulerArgs), 0o644); err != nil {
		return err
	}
	if err := c.kwokctl(ctx, "create", "cluster", "--config", kwokConfig, "--kubeconfig=", "--wait", "2m"); err != nil {
		return fmt.Errorf("kwokctl create cluster (logs in %s): %w", filepath.Join(c.Workdir, "clusters", c.Name, "logs"), err)
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	if err := c.createNodes(ctx, client); err != nil {
		return err
	}
	return c.waitSchedulers(ctx, client)
}

// Down deletes the cluster of these options, stopping its processes, and
// removes its working directory. A cluster that does not exist is no error.
func Down(ctx context.Context, opts Options) error {
	opts.complete()
	if _, err := os.Stat(filepath.Join(opts.Workdir, "clusters", opts.Name)); err == nil {
		c := &Cluster{Options: opts}
		if err := c.kwokctl(ctx, "delete", "cluster"); err != nil {
			return fmt.Errorf("kwokctl delete cluster: %w", err)
		}
	}
	if err := os.RemoveAll(opts.Workdir); err != nil {
		return err
	}
	if opts.defaultWorkdir {
		_ = os.Remove(filepath.Dir(opts.Workdir)) // .local/, when no other cluster is in it
	}
	return nil
}

// Client returns a clientset for the cluster's admin.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (c *Cluster) kwokctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.bin("kwokctl"), append(args, "--name", c.Name)...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+c.Workdir)
	cmd.Stdout, cmd.Stderr = c.Log, c.Log
	return cmd.Run()
}

// SchedulerLog is the file our scheduler's output goes to.
func (c *Cluster) SchedulerLog() string {
	return filepath.Join(c.Workdir, "clusters", c.Name, "logs", schedulerComponent+".log")
}

// schedulerComponent names our scheduler among kwokctl's components.
const schedulerComponent = "workload-coscheduling"

// renderScheduler renders the chart as helm install would for kube-system
// and returns the command line of its Deployment's container, with the
// KubeSchedulerConfiguration of its ConfigMap written to configPath. Only
// what a pod gets from its cluster is the local cluster's own: the
// kubeconfig (in a pod, the in-cluster config) and the secure port (a free
// one: the scheduler runs on the host). Feature gates and every other flag
// are the chart's.
func (c *Cluster) renderScheduler(ctx context.Context, configPath string) ([]string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin("helm"), "template", "workload-coscheduling",
		filepath.Join(c.Root, "charts", "workload-coscheduling"), "--namespace", "kube-system",
		"--kube-version", KubeVersion, "--set", "schedulerName="+SchedulerName,
		"--show-only", "templates/configmap.yaml", "--show-only", "templates/deployment.yaml")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	var cm v1.ConfigMap
	var deployment appsv1.Deployment
	for _, doc := range strings.Split(out.String(), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("the chart's render: %w", err)
		}
		var err error
		switch meta.Kind {
		case "ConfigMap":
			err = yaml.Unmarshal([]byte(doc), &cm)
		case "Deployment":
			err = yaml.Unmarshal([]byte(doc), &deployment)
		}
		if err != nil {
			return nil, fmt.Errorf("the chart's %s: %w", meta.Kind, err)
		}
	}
	data, ok := cm.Data["scheduler-config.yaml"]
	if !ok {
		return nil, errors.New("the chart's ConfigMap has no scheduler-config.yaml")
	}
	if len(deployment.Spec.Template.Spec.Containers) != 1 {
		return nil, errors.New("the chart's Deployment has no single container")
	}
	cfg := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		return nil, fmt.Errorf("the chart's scheduler configuration: %w", err)
	}
	client, _ := cfg["clientConnection"].(map[string]interface{})
	if client == nil {
		client = map[string]interface{}{}
	}
	client["kubeconfig"] = c.Kubeconfig
	cfg["clientConnection"] = client
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(configPath, raw, 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var args []string
	for _, arg := range deployment.Spec.Template.Spec.Containers[0].Args {
		switch {
		case strings.HasPrefix(arg, "--config="):
			arg = "--config=" + configPath
		case strings.HasPrefix(arg, "--secure-port="):
			arg = fmt.Sprintf("--secure-port=%d", port)
		}
		args = append(args, arg)
	}
	return args, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// kwokctlConfiguration is kwokctl's configuration: the binary runtime with
// the repository's binaries and the Workload API served. kwokctl's own
// scheduler slot is off: it would add its flags and feature gates
// (kubeFeatureGates go to every component it runs). Our scheduler runs as
// an extra component with the chart's command line, and the stock scheduler
// as another that serves default-scheduler pods.
func (c *Cluster) kwokctlConfiguration(schedulerArgs []string) []byte {
	var ours strings.Builder
	for _, arg := range schedulerArgs {
		fmt.Fprintf(&ours, "      - %q\n", arg)
	}
	return fmt.Appendf(nil, `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: %[1]s
  etcdBinary: %[2]s/k8s/etcd
  kubeApiserverBinary: %[2]s/k8s/kube-apiserver
  kubeControllerManagerBinary: %[2]s/k8s/kube-controller-manager
  kubectlBinary: %[2]s/k8s/kubectl
  kwokControllerBinary: %[2]s/kwok
  disableKubeScheduler: true
  kubeFeatureGates: GenericWorkload=true
  kubeRuntimeConfig: scheduling.k8s.io/v1alpha1=true
components:
  - name: %[6]s
    binary: %[2]s/kube-scheduler
    links: [kube-apiserver]
    workDir: %[3]s
    args:
%[4]s  - name: default-scheduler
    binary: %[2]s/k8s/default-scheduler
    links: [kube-apiserver]
    workDir: %[3]s
    args:
      - --kubeconfig=%[5]s
      - --leader-elect=false
      - --secure-port=0
`, KubeVersion, filepath.Join(c.Root, "bin"), filepath.Join(c.Workdir, "clusters", c.Name), ours.String(), c.Kubeconfig, schedulerComponent)
}

// createNodes registers the simulated nodes; the kwok controller marks them
// Ready.
func (c *Cluster) createNodes(ctx context.Context, client kubernetes.Interface) error {
	resources := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse(c.NodeCPU),
		v1.ResourceMemory: resource.MustParse(c.NodeMemory),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	for i := 1; i <= c.Nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		node := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
				Labels:      map[string]string{"type": "kwok", v1.LabelHostname: name, v1.LabelOSStable: "linux"},
			},
			Status: v1.NodeStatus{Capacity: resources, Allocatable: resources},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == v1.NodeReady && cond.Status == v1.ConditionTrue && len(n.Spec.Taints) == 0 {
					ready++
				}
			}
		}
		return ready == c.Nodes, nil
	})
}

// waitSchedulers returns once our scheduler holds its Lease, and the
// default namespace has the ServiceAccount pods are admitted with.
func (c *Cluster) waitSchedulers(ctx context.Context, client kubernetes.Interface) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := client.CoordinationV1().Leases("kube-system").Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return holder(lease) != "", nil
	})
	if err != nil {
		// Down removes the log: tell what it said.
		log, _ := os.ReadFile(c.SchedulerLog())
		return fmt.Errorf("our scheduler did not take its lease kube-system/%s: %w; the end of its log:\n%s", leaseName, err, lastLines(log, 30))
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func lastLines(text []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
