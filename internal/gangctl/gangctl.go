// Package gangctl is the kubectl plugin `kubectl gang`: it lists the gangs of
// Workloads and describes one Workload, from the Workloads, pods and events
// the API server holds (pkg/gangview), with kubectl's usual flags.
package gangctl

import (
	"context"
	"encoding/json"
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
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

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

	var allNamespaces bool
	var output string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the gangs in a namespace, or in all with -A",
		Example: "  kubectl gang list -n ml\n  kubectl gang list -A -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := clientFor(config)
			if err != nil {
				return err
			}
			if allNamespaces {
				ns = metav1.NamespaceAll
			}
			snap, err := read(cmd.Context(), c, ns, "")
			if err != nil {
				return err
			}
			return printRows(out, snap.gangs, output, allNamespaces)
		},
	}
	list.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list the gangs of every namespace")
	list.Flags().StringVarP(&output, "output", "o", "", "output format: wide, json or yaml")

	describe := &cobra.Command{
		Use:     "describe WORKLOAD",
		Short:   "Describe a Workload: its podGroups, their gangs and the latest events",
		Example: "  kubectl gang describe training -n ml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := clientFor(config)
			if err != nil {
				return err
			}
			snap, err := read(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			if output != "" {
				return printRows(out, snap.gangs, output, false)
			}
			if err := readPlacements(cmd.Context(), c, snap, args[0]); err != nil {
				return err
			}
			return describeWorkload(out, ns, args[0], snap)
		},
	}
	describe.Flags().StringVarP(&output, "output", "o", "", "output format for the gangs: wide, json or yaml")

	root.AddCommand(list, describe)
	return root
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

// Clients read Workloads of both APIs, pods and events.
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

// List reads the Workloads of both APIs, the pods and the events of
// namespace ns (all when empty). An API the server does not serve has no
// Workloads.
func List(ctx context.Context, c Clients, ns string) (gangview.Workloads, []v1.Pod, []eventsv1.Event, error) {
	var workloads gangview.Workloads
	native, err := c.Kube.SchedulingV1alpha1().Workloads(ns).List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		workloads.Native = native.Items
	case !apierrors.IsNotFound(err):
		return workloads, nil, nil, fmt.Errorf("listing Workloads: %w", err)
	}
	portable, err := c.Portable.SchedulingV1alpha1().Workloads(ns).List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		workloads.Portable = portable.Items
	case !apierrors.IsNotFound(err):
		return workloads, nil, nil, fmt.Errorf("listing portable Workloads: %w", err)
	}
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return workloads, nil, nil, err
	}
	events, err := c.Kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return workloads, nil, nil, err
	}
	return workloads, pods.Items, events.Items, nil
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
}

// read lists what the view needs in namespace ns (all when empty); with a
// workload name, only that Workload's pods and gangs are kept.
func read(ctx context.Context, c Clients, ns, workload string) (*snapshot, error) {
	workloads, pods, events, err := List(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{workloads: workloads, events: events}
	members := pods
	if workload != "" {
		found := slices.ContainsFunc(workloads.Native, func(w schedulingv1alpha1.Workload) bool { return w.Name == workload }) ||
			slices.ContainsFunc(workloads.Portable, func(w wcsv1alpha1.Workload) bool { return w.Name == workload })
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

func printRows(out io.Writer, rows []gangview.Gang, format string, namespaces bool) error {
	switch format {
	case "":
		return gangview.WriteTable(out, rows, gangview.TableOptions{Namespace: namespaces, MaxReason: 80})
	case "wide":
		return gangview.WriteTable(out, rows, gangview.TableOptions{Namespace: namespaces})
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"gangs": nonNil(rows)})
	case "yaml":
		data, err := yaml.Marshal(map[string]any{"gangs": nonNil(rows)})
		if err != nil {
			return err
		}
		_, err = out.Write(data)
		return err
	}
	return fmt.Errorf("unknown output format %q: want wide, json or yaml", format)
}

func nonNil(rows []gangview.Gang) []gangview.Gang {
	if rows == nil {
		return []gangview.Gang{}
	}
	return rows
}

// describeWorkload prints the Workload's podGroups, its gangs and the latest
// events of the Workload and its members.
func describeWorkload(out io.Writer, ns, name string, snap *snapshot) error {
	fmt.Fprintf(out, "Workload:   %s\nNamespace:  %s\n", name, ns)
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
		if (r.Kind == "Workload" && r.Name == workload) || (r.Kind == "Pod" && snap.members[r.Name]) {
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
