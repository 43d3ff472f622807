// Command demo shows gang scheduling at work: it applies the samples of
// manifests/samples/ into a namespace of its own and prints, live, a table of
// every gang (members present, bound, running, done, and why it waits) until
// the cluster settles, then a summary. Without a kubeconfig it first brings up
// the local cluster (internal/localcluster) and removes it at the end.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/workload-coscheduling/workload-coscheduling/internal/gangctl"
	"github.com/workload-coscheduling/workload-coscheduling/internal/localcluster"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gangview"
)

type options struct {
	kubeconfig    string
	schedulerName string
	samples       string
	namespace     string
	root          string
	timeout       time.Duration
	settle        time.Duration
	keep          bool
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "cluster to run on; empty starts the local cluster")
	flag.StringVar(&o.schedulerName, "scheduler-name", localcluster.SchedulerName, "schedulerName of workload-coscheduling in that cluster")
	flag.StringVar(&o.samples, "samples", "manifests/samples", "directory of the manifests to apply")
	flag.StringVar(&o.namespace, "namespace", "gang-demo", "namespace to create for the samples (must not exist)")
	flag.StringVar(&o.root, "root", ".", "the repository (bin/ and charts/ for the local cluster)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up after this long")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "the table must not change for this long to end")
	flag.BoolVar(&o.keep, "keep", false, "leave the namespace (and the local cluster) in place")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	// Whatever happens, what the demo started is removed, even after Ctrl-C.
	cleanup := context.WithoutCancel(ctx)
	if o.kubeconfig == "" {
		root, err := filepath.Abs(o.root)
		if err != nil {
			return err
		}
		opts := localcluster.Defaults(root)
		opts.Name = "workload-coscheduling-demo"
		fmt.Fprintf(out, "No KUBECONFIG given: starting a local cluster (%d simulated nodes of %s CPUs, %s)...\n",
			opts.Nodes, opts.NodeCPU, opts.NodeMemory)
		start := time.Now()
		c, err := localcluster.Up(ctx, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Local cluster up in %.1fs: Kubernetes %s with the Workload API, the default scheduler and workload-coscheduling.\n\n",
			time.Since(start).Seconds(), localcluster.KubeVersion)
		o.kubeconfig = c.Kubeconfig
		if o.keep {
			fmt.Fprintf(out, "Kept: export KUBECONFIG=%s\nRemove it with: go run ./cmd/local-cluster -name %s down\n\n", c.Kubeconfig, opts.Name)
		} else {
			defer func() {
				err = errors.Join(err, localcluster.Down(cleanup, opts))
				fmt.Fprintln(out, "Local cluster removed.")
			}()
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	objs, err := loadSamples(o.samples, o.schedulerName)
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s (pass -namespace to use another): %w", o.namespace, err)
	}
	if !o.keep {
		defer func() {
			err = errors.Join(err, client.CoreV1().Namespaces().Delete(cleanup, o.namespace, metav1.DeleteOptions{}))
		}()
	}
	if err := waitServiceAccount(ctx, client, o.namespace); err != nil {
		return err
	}
	for _, obj := range objs {
		if err := create(ctx, client, o.namespace, obj); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "Applied %d objects from %s into namespace %s, with schedulerName %s.\n\n", len(objs), o.samples, o.namespace, o.schedulerName)

	clients, err := gangctl.NewClients(cfg)
	if err != nil {
		return err
	}
	rows, err := watch(ctx, clients, o, out)
	if err != nil {
		return err
	}
	return summarize(rows, out)
}

// loadSamples decodes every object of the YAML files in dir, in file order,
// and points their pods at schedulerName.
func loadSamples(dir, schedulerName string) ([]runtime.Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml in %s (%v)", dir, err)
	}
	sort.Strings(files)
	var objs []runtime.Object
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if spec := podSpec(obj); spec != nil {
				spec.SchedulerName = schedulerName
			}
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

func podSpec(obj runtime.Object) *v1.PodSpec {
	switch o := obj.(type) {
	case *batchv1.Job:
		return &o.Spec.Template.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	case *v1.Pod:
		return &o.Spec
	}
	return nil
}

func create(ctx context.Context, client kubernetes.Interface, ns string, obj runtime.Object) error {
	var err error
	switch o := obj.(type) {
	case *schedulingv1alpha1.Workload:
		_, err = client.SchedulingV1alpha1().Workloads(ns).Create(ctx, o, metav1.CreateOptions{})
	case *batchv1.Job:
		_, err = client.BatchV1().Jobs(ns).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.Deployment:
		_, err = client.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
	case *v1.Pod:
		_, err = client.CoreV1().Pods(ns).Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("the demo does not create %T", obj)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	return nil
}

// waitServiceAccount waits for the namespace's default ServiceAccount, without
// which the API server refuses pods.
func waitServiceAccount(ctx context.Context, client kubernetes.Interface, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// watch redraws the table until it has not changed for o.settle and every
// gang has either run or bound nothing, or until o.timeout.
func watch(ctx context.Context, clients gangctl.Clients, o options, out io.Writer) ([]gangview.Gang, error) {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	start := time.Now()
	deadline := start.Add(o.timeout)
	var last, lastCounts string
	var rows []gangview.Gang
	lines, changed := 0, start
	for {
		var err error
		rows, err = snapshot(ctx, clients, o.namespace)
		if err != nil {
			return nil, err
		}
		var table strings.Builder
		if err := gangview.WriteTable(&table, rows, gangview.TableOptions{MaxReason: 90}); err != nil {
			return nil, err
		}
		// Reasons change with every attempt of a gang that cannot fit: the
		// table is redrawn, but only counts and states decide it settled.
		if counts := fmt.Sprint(countsOf(rows)); counts != lastCounts {
			lastCounts, changed = counts, time.Now()
		}
		if table.String() != last {
			last = table.String()
			if tty && lines > 0 {
				fmt.Fprintf(out, "\033[%dA\033[J", lines)
			}
			text := fmt.Sprintf("[%5.1fs]\n%s", time.Since(start).Seconds(), table.String())
			if !tty {
				text += "\n"
			}
			fmt.Fprint(out, text)
			lines = strings.Count(text, "\n")
		}
		if len(rows) > 0 && settled(rows) && time.Since(changed) >= o.settle {
			return rows, nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "\nGave up after %v: the cluster has not settled.\n", o.timeout)
			return rows, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func countsOf(rows []gangview.Gang) []gangview.Gang {
	counts := make([]gangview.Gang, len(rows))
	for i, g := range rows {
		g.Reason = ""
		counts[i] = g
	}
	return counts
}

func settled(rows []gangview.Gang) bool {
	for _, g := range rows {
		switch g.State {
		case gangview.Running, gangview.Succeeded, gangview.Failed:
		case gangview.Binding:
			return false
		default:
			if g.Bound > 0 {
				return false
			}
		}
	}
	return true
}

func snapshot(ctx context.Context, clients gangctl.Clients, ns string) ([]gangview.Gang, error) {
	workloads, pods, events, err := gangctl.List(ctx, clients, ns, "")
	if err != nil {
		return nil, err
	}
	return gangview.Build(workloads, pods, events), nil
}

func summarize(rows []gangview.Gang, out io.Writer) error {
	var ran, waiting, partial []string
	for _, g := range rows {
		name := g.Key.Workload + "/" + g.Key.PodGroup
		if g.Key.ReplicaKey != "" {
			name += "[" + g.Key.ReplicaKey + "]"
		}
		switch {
		case g.Partial():
			partial = append(partial, fmt.Sprintf("%s (%d of %d bound)", name, g.Bound, g.MinCount))
		case g.Bound > 0:
			ran = append(ran, fmt.Sprintf("%s (%s)", name, plural(g.Bound, "pod")))
		default:
			waiting = append(waiting, fmt.Sprintf("%s (0 of %d bound; %s)", name, g.Present, g.Reason))
		}
	}
	fmt.Fprintf(out, "\nSummary:\n  ran:      %s\n", strings.Join(ran, ", "))
	if len(waiting) > 0 {
		fmt.Fprintf(out, "  waiting:  %s\n", strings.Join(waiting, "\n            "))
	}
	if len(partial) > 0 {
		fmt.Fprintf(out, "  PARTIALLY BOUND: %s\n", strings.Join(partial, ", "))
		return fmt.Errorf("%d gangs were left partially bound", len(partial))
	}
	fmt.Fprintln(out, "  No gang was left partially bound.")
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
