// Package gangctl is the kubectl plugin `kubectl gang`: it lists the gangs of
// Workloads and describes one Workload, from the Workloads, pods and events
// the API server holds (pkg/gangview), with kubectl's usual flags.
package gangctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/kubectl/pkg/cmd/get"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gangview"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// NewCommand returns the root command; out and errOut receive its output.
func NewCommand(out, errOut io.Writer) *cobra.Command {
	config := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-gang",
		Short: "Show the gangs of Workloads: members present, bound, running, and why a gang waits",
		Long: `kubectl gang shows how far each gang of a Workload has come, and why it waits.

A gang is the pods of a Workload's podGroup that share a podGroupReplicaKey.
For each: its policy (gang(minCount) or basic), members present, bound to a
node, running, done, its state and the scheduler's latest word on a pending
member.`,
		SilenceUsage: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	config.AddFlags(root.PersistentFlags())

	var allNamespaces, watch bool
	var selector string
	listPrint := get.NewGetPrintFlags()
	list := &cobra.Command{
		Use:   "list",
		Short: "List the gangs in a namespace, or in all with -A",
		Long: `List the gangs in a namespace, or in all with -A, as kubectl get lists objects:
each gang is printed as a Gang (kubectl-gang.workload-coscheduling.io/v1alpha1,
a view of kubectl gang, not an object of the API server) named
WORKLOAD/PODGROUP[/REPLICAKEY], labelled with its Workload's labels.`,
		Example: `  kubectl gang list -n ml
  kubectl gang list -A -o wide
  kubectl gang list -l team=vision -o jsonpath='{.items[*].metadata.name}'
  kubectl gang list -o custom-columns=GANG:.metadata.name,STATE:.status.state
  kubectl gang list -w`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := clientFor(config)
			if err != nil {
				return err
			}
			if allNamespaces {
				ns = metav1.NamespaceAll
			}
			if watch {
				return watchGangs(cmd.Context(), c, ns, selector, out, listPrint, allNamespaces)
			}
			snap, err := read(cmd.Context(), c, ns, "", selector)
			if err != nil {
				return err
			}
			if len(snap.gangs) == 0 && (*listPrint.OutputFormat == "" || *listPrint.OutputFormat == "wide") {
				return noneFound(errOut, ns)
			}
			return printGangs(out, listPrint, snap.gangs, viewObjects(snap.gangs, snap.allPods, snap.workloads), allNamespaces, time.Now())
		},
	}
	listPrint.AddFlags(list)
	list.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list the gangs of every namespace")
	list.Flags().StringVarP(&selector, "selector", "l", "", "only the gangs of Workloads with these labels (e.g. -l team=vision,tier!=test)")
	list.Flags().BoolVarP(&watch, "watch", "w", false, "after listing, print each gang again when it changes")

	describePrint := get.NewGetPrintFlags()
	describe := &cobra.Command{
		Use:     "describe WORKLOAD",
		Short:   "Describe a Workload: its podGroups, their gangs and the latest events",
		Example: "  kubectl gang describe training -n ml\n  kubectl gang describe training -o yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := clientFor(config)
			if err != nil {
				return err
			}
			snap, err := read(cmd.Context(), c, ns, args[0], "")
			if err != nil {
				return err
			}
			if *describePrint.OutputFormat != "" {
				return printGangs(out, describePrint, snap.gangs, viewObjects(snap.gangs, snap.allPods, snap.workloads), false, time.Now())
			}
			if err := readPlacements(cmd.Context(), c, snap, args[0]); err != nil {
				return err
			}
			return describeWorkload(out, ns, args[0], snap)
		},
	}
	describePrint.AddFlags(describe)

	root.AddCommand(list, describe)
	return root
}

// noneFound says so as kubectl get does, on standard error.
func noneFound(errOut io.Writer, ns string) error {
	if ns == metav1.NamespaceAll {
		_, err := fmt.Fprintln(errOut, "No resources found")
		return err
	}
	_, err := fmt.Fprintf(errOut, "No resources found in %s namespace.\n", ns)
	return err
}

func clientFor(config *genericclioptions.ConfigFlags) (Clients, string, error) {
	cfg, err := config.ToRESTConfig()
	if err != nil {
		return Clients{}, "", err
	}
	ns, _, err := config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return Clients{}, "", err
	}
	c, err := NewClients(cfg)
	return c, ns, err
}

// Clients read Workloads of both APIs, PodGroups (Portable), pods and
// events.
type Clients struct {
	Kube     kubernetes.Interface
	Portable versioned.Interface
}

// NewClients returns the clients of a cluster.
func NewClients(cfg *rest.Config) (Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Clients{}, err
	}
	portableCfg := rest.CopyConfig(cfg)
	// Custom resources have no protobuf encoding.
	portableCfg.ContentType, portableCfg.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	portable, err := versioned.NewForConfig(portableCfg)
	return Clients{Kube: kube, Portable: portable}, err
}

// pageSize is how many objects each list request returns: -A on a large
// cluster reads pods and events page by page, keeping only gang members and
// the events about them and their Workloads.
const pageSize = 500

// List reads the Workloads of both APIs (those matching selector, when one
// is given), the pods that reference a Workload (one of those, with a
// selector) and the events about them and the Workloads, in namespace ns
// (all when empty). An API the server does not serve has no Workloads.
func List(ctx context.Context, c Clients, ns, selector string) (gangview.Workloads, []v1.Pod, []eventsv1.Event, error) {
	var workloads gangview.Workloads
	opts := metav1.ListOptions{LabelSelector: selector, Limit: pageSize}
	err := eachPage(ctx, opts, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Kube.SchedulingV1alpha1().Workloads(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		workloads.Native = append(workloads.Native, l.Items...)
		return l.Continue, nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return workloads, nil, nil, fmt.Errorf("listing Workloads: %w", err)
	}
	err = eachPage(ctx, opts, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Portable.SchedulingV1alpha1().Workloads(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		workloads.Portable = append(workloads.Portable, l.Items...)
		return l.Continue, nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return workloads, nil, nil, fmt.Errorf("listing portable Workloads: %w", err)
	}
	err = eachPage(ctx, opts, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Portable.SchedulerPluginsV1alpha1().PodGroups(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		workloads.PodGroups = append(workloads.PodGroups, l.Items...)
		return l.Continue, nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return workloads, nil, nil, fmt.Errorf("listing PodGroups: %w", err)
	}
	selected := map[gang.WorkloadKey]bool{}
	for _, w := range workloads.Native {
		selected[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name}] = true
	}
	for _, w := range workloads.Portable {
		selected[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable}] = true
	}
	for _, pg := range workloads.PodGroups {
		selected[gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup}] = true
	}
	var pods []v1.Pod
	members := map[types.NamespacedName]bool{}
	err = eachPage(ctx, metav1.ListOptions{Limit: pageSize}, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Kube.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		for _, p := range l.Items {
			if key, ok := gang.KeyOf(&p); ok && (selector == "" || selected[key.WorkloadKey()]) {
				pods = append(pods, p)
				members[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = true
			}
		}
		return l.Continue, nil
	})
	if err != nil {
		return workloads, nil, nil, err
	}
	var events []eventsv1.Event
	err = eachPage(ctx, metav1.ListOptions{Limit: pageSize}, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Kube.EventsV1().Events(ns).List(ctx, opts)
		if err != nil {
			return "", err
		}
		for _, e := range l.Items {
			r := e.Regarding
			about := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
			if (r.Kind == "Pod" && members[about]) || (r.Kind == "Workload" && (selector == "" || selectedName(selected, about))) ||
				(r.Kind == "PodGroup" && (selector == "" || selected[gang.WorkloadKey{Namespace: about.Namespace, Name: about.Name, Source: gang.SourcePodGroup}])) {
				events = append(events, e)
			}
		}
		return l.Continue, nil
	})
	return workloads, pods, events, err
}

func selectedName(selected map[gang.WorkloadKey]bool, w types.NamespacedName) bool {
	return selected[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name}] ||
		selected[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable}]
}

// eachPage calls list for each page of a list: list returns the page's
// continue token.
func eachPage(ctx context.Context, opts metav1.ListOptions, list func(metav1.ListOptions) (string, error)) error {
	for {
		next, err := list(opts)
		if err != nil || next == "" {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		opts.Continue = next
	}
}

type snapshot struct {
	workloads gangview.Workloads
	events    []eventsv1.Event
	gangs     []gangview.Gang
	// members names the pods that reference the described Workload, pods
	// are those pods, and placements describe where its gangs are placed
	// by topology (readPlacements).
	members    map[string]bool
	pods       []v1.Pod
	placements []string
	// allPods are the gang members read (all of them, not just the
	// described Workload's), for the gangs' ages.
	allPods []v1.Pod
}

// read lists what the view needs in namespace ns (all when empty); with a
// workload name, only that Workload's pods and gangs are kept.
func read(ctx context.Context, c Clients, ns, workload, selector string) (*snapshot, error) {
	workloads, pods, events, err := List(ctx, c, ns, selector)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{workloads: workloads, events: events, allPods: pods}
	members := pods
	if workload != "" {
		found := slices.ContainsFunc(workloads.Native, func(w schedulingv1alpha1.Workload) bool { return w.Name == workload }) ||
			slices.ContainsFunc(workloads.Portable, func(w wcsv1alpha1.Workload) bool { return w.Name == workload }) ||
			slices.ContainsFunc(workloads.PodGroups, func(pg spv1alpha1.PodGroup) bool { return pg.Name == workload })
		members = slices.DeleteFunc(members, func(p v1.Pod) bool {
			key, ok := gang.KeyOf(&p)
			return !ok || key.Workload != workload
		})
		if !found && len(members) == 0 {
			return nil, fmt.Errorf("no Workload %q and no pod referencing it in namespace %q", workload, ns)
		}
		snap.members = map[string]bool{}
		for _, p := range members {
			snap.members[p.Name] = true
		}
		snap.pods = members
	}
	snap.gangs = gangview.Build(workloads, members, events)
	return snap, nil
}

// describeWorkload prints the Workload's podGroups, its gangs and the latest
// events of the Workload and its members.
func describeWorkload(out io.Writer, ns, name string, snap *snapshot) error {
	kind := "Workload"
	if !slices.ContainsFunc(snap.workloads.Native, func(w schedulingv1alpha1.Workload) bool { return w.Name == name }) &&
		!slices.ContainsFunc(snap.workloads.Portable, func(w wcsv1alpha1.Workload) bool { return w.Name == name }) &&
		slices.ContainsFunc(snap.workloads.PodGroups, func(pg spv1alpha1.PodGroup) bool { return pg.Name == name }) {
		kind = "PodGroup"
	}
	fmt.Fprintf(out, "%-11s %s\nNamespace:  %s\n", kind+":", name, ns)
	var groups []string
	topology := topologyOf(snap, name)
	for _, w := range snap.workloads.Native {
		if w.Name == name {
			groups = append(groups, podGroupLines(&w.Spec, "", topology)...)
		}
	}
	for _, w := range snap.workloads.Portable {
		if w.Name == name {
			spec := w.Spec.BuiltIn()
			groups = append(groups, podGroupLines(&spec, " (portable)", topology)...)
		}
	}
	for _, pg := range snap.workloads.PodGroups {
		if pg.Name == name {
			policy := fmt.Sprintf("gang, minMember %d", pg.Spec.MinMember)
			if pg.Spec.MinMember < 2 {
				policy = fmt.Sprintf("basic, minMember %d", pg.Spec.MinMember)
			}
			if len(pg.Spec.MinResources) > 0 {
				policy += ", minResources " + resourceList(pg.Spec.MinResources)
			}
			groups = append(groups, fmt.Sprintf("  -\t%s (scheduler-plugins PodGroup, %s)", policy, phaseOf(pg.Status.Phase)))
		}
	}
	if len(groups) == 0 {
		fmt.Fprintln(out, "PodGroups:  <the Workload does not exist; its pods wait for it>")
	} else {
		fmt.Fprintln(out, "PodGroups:")
		for _, line := range groups {
			fmt.Fprintln(out, line)
		}
	}
	fmt.Fprintln(out, "Gangs:")
	var table strings.Builder
	if err := gangview.WriteTable(&table, snap.gangs, gangview.TableOptions{}); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(table.String(), "\n"), "\n") {
		fmt.Fprintln(out, "  "+line)
	}
	if len(snap.placements) > 0 {
		fmt.Fprintln(out, "Placed by topology:")
		for _, line := range snap.placements {
			fmt.Fprintln(out, line)
		}
	}
	return writeEvents(out, name, snap)
}

func podGroupLines(spec *schedulingv1alpha1.WorkloadSpec, suffix string, topology map[string]*workloadref.Topology) []string {
	var lines []string
	for _, g := range spec.PodGroups {
		policy := "basic"
		if g.Policy.Gang != nil {
			policy = fmt.Sprintf("gang, minCount %d", g.Policy.Gang.MinCount)
			if t := topology[g.Name]; t != nil {
				policy += ", topology " + t.String()
			}
		}
		lines = append(lines, fmt.Sprintf("  %s\t%s%s", g.Name, policy, suffix))
	}
	return lines
}

// writeEvents prints the latest events on the Workload and its member pods,
// oldest first.
func writeEvents(out io.Writer, workload string, snap *snapshot) error {
	var events []eventsv1.Event
	for _, e := range snap.events {
		r := e.Regarding
		if ((r.Kind == "Workload" || r.Kind == "PodGroup") && r.Name == workload) || (r.Kind == "Pod" && snap.members[r.Name]) {
			events = append(events, e)
		}
	}
	slices.SortStableFunc(events, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	if len(events) > 15 {
		events = events[len(events)-15:]
	}
	fmt.Fprintln(out, "Events:")
	if len(events) == 0 {
		fmt.Fprintln(out, "  <none>")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tREASON\tOBJECT\tCOUNT\tMESSAGE")
	for _, e := range events {
		count := int32(1)
		if e.Series != nil {
			count = e.Series.Count
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s/%s\t%d\t%s\n", e.Type, e.Reason, strings.ToLower(e.Regarding.Kind), e.Regarding.Name, count, e.Note)
	}
	return tw.Flush()
}

func eventTime(e eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func resourceList(l v1.ResourceList) string {
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	slices.Sort(names)
	for i, name := range names {
		q := l[v1.ResourceName(name)]
		names[i] = name + "=" + q.String()
	}
	return strings.Join(names, ",")
}

func phaseOf(phase spv1alpha1.PodGroupPhase) string {
	if phase == "" {
		return "phase not written yet"
	}
	return "phase " + string(phase)
}
