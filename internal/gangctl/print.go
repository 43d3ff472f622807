package gangctl

import (
	"fmt"
	"io"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/kubectl/pkg/cmd/get"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gangview"
)

// A gang is no object of the API server: kubectl gang prints each as a Gang
// of this client-side group, so kubectl's printers (json, yaml, name,
// jsonpath, go-template, custom-columns, the table) work on it as on any
// object.
const (
	viewAPIVersion = "kubectl-gang.workload-coscheduling.io/v1alpha1"
	viewKind       = "Gang"
)

// gangObject is the view of one gang: metadata.name is
// WORKLOAD/PODGROUP[/REPLICAKEY], its creation that of its first member (or
// of its Workload), its labels the Workload's.
func gangObject(g gangview.Gang, created time.Time, labels map[string]string) *unstructured.Unstructured {
	name := g.Key.Workload + "/" + g.Key.PodGroup
	if g.Key.ReplicaKey != "" {
		name += "/" + g.Key.ReplicaKey
	}
	api := "scheduling.k8s.io/v1alpha1"
	switch g.Key.Source {
	case gang.SourcePortable:
		api = "scheduling.workload-coscheduling.io/v1alpha1"
	case gang.SourcePodGroup:
		// A PodGroup is the gang: its name alone.
		name, api = g.Key.Workload, "scheduling.x-k8s.io/v1alpha1"
	}
	policy := "Basic"
	if g.IsGang {
		policy = "Gang"
	}
	spec := map[string]interface{}{
		"workload":    g.Key.Workload,
		"workloadAPI": api,
		"policy":      policy,
	}
	if g.Key.PodGroup != "" {
		spec["podGroup"] = g.Key.PodGroup
	}
	if g.Key.ReplicaKey != "" {
		spec["replicaKey"] = g.Key.ReplicaKey
	}
	if g.MinCount > 0 {
		spec["minCount"] = int64(g.MinCount)
	}
	status := map[string]interface{}{
		"present":   int64(g.Present),
		"bound":     int64(g.Bound),
		"running":   int64(g.Running),
		"succeeded": int64(g.Succeeded),
		"failed":    int64(g.Failed),
		"state":     string(g.State),
	}
	if g.Reason != "" {
		status["reason"] = g.Reason
	}
	obj := &unstructured.Unstructured{Object: map[string]interface{}{"spec": spec, "status": status}}
	obj.SetAPIVersion(viewAPIVersion)
	obj.SetKind(viewKind)
	obj.SetName(name)
	obj.SetNamespace(g.Key.Namespace)
	obj.SetCreationTimestamp(metav1.NewTime(created))
	obj.SetLabels(labels)
	return obj
}

// gangList is the Kubernetes-style list kubectl get prints for json and
// yaml: kind List, apiVersion v1, the objects as items.
func gangList(objs []*unstructured.Unstructured) *unstructured.UnstructuredList {
	list := &unstructured.UnstructuredList{Object: map[string]interface{}{
		"apiVersion": "v1", "kind": "List", "metadata": map[string]interface{}{"resourceVersion": ""},
	}}
	for _, o := range objs {
		list.Items = append(list.Items, *o)
	}
	return list
}

// The table's columns; REASON is cut to reasonWidth unless -o wide, which
// also shows where the Workload is (the API).
var gangColumns = []metav1.TableColumnDefinition{
	{Name: "Workload", Type: "string"},
	{Name: "PodGroup", Type: "string"},
	{Name: "Replica", Type: "string"},
	{Name: "Policy", Type: "string"},
	{Name: "Present", Type: "string"},
	{Name: "Bound", Type: "integer"},
	{Name: "Running", Type: "integer"},
	{Name: "Done", Type: "integer"},
	{Name: "State", Type: "string"},
	{Name: "Age", Type: "string"},
	{Name: "API", Type: "string", Priority: 1},
	{Name: "Reason", Type: "string"},
}

const reasonWidth = 80

// gangTable is the table kubectl's table printer prints: one row per gang,
// each carrying its object (for the namespace column and --show-labels).
func gangTable(rows []gangview.Gang, objs []*unstructured.Unstructured, wide bool, now time.Time) *metav1.Table {
	table := &metav1.Table{ColumnDefinitions: gangColumns}
	for i, g := range rows {
		replica, policy, present := "-", "basic", strconv.Itoa(g.Present)
		if g.Key.ReplicaKey != "" {
			replica = g.Key.ReplicaKey
		}
		switch {
		case g.IsGang:
			policy, present = fmt.Sprintf("gang(%d)", g.MinCount), fmt.Sprintf("%d/%d", g.Present, g.MinCount)
		case g.State == gangview.WaitingForWorkload:
			policy = "?"
		}
		api, podGroup := "built-in", g.Key.PodGroup
		switch g.Key.Source {
		case gang.SourcePortable:
			api = "portable"
		case gang.SourcePodGroup:
			api, podGroup = "podgroup", "-"
		}
		reason := g.Reason
		if !wide && len([]rune(reason)) > reasonWidth {
			reason = string([]rune(reason)[:reasonWidth-1]) + "…"
		}
		age := "<unknown>"
		if ts := objs[i].GetCreationTimestamp(); !ts.IsZero() {
			age = duration.HumanDuration(now.Sub(ts.Time))
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []interface{}{g.Key.Workload, podGroup, replica, policy, present, int64(g.Bound), int64(g.Running), int64(g.Succeeded + g.Failed), string(g.State), age, api, reason},
			Object: runtime.RawExtension{Object: objs[i]},
		})
	}
	return table
}

// printGangs prints the gangs as kubectl get would: a table (-o wide,
// --no-headers, --show-labels, -L), or the objects in any other format
// kubectl's print flags name. withNamespace adds the namespace column (-A).
func printGangs(out io.Writer, flags *get.PrintFlags, rows []gangview.Gang, objs []*unstructured.Unstructured, withNamespace bool, now time.Time) error {
	format := *flags.OutputFormat
	if format == "" || format == "wide" {
		printer, err := tablePrinter(flags, withNamespace)
		if err != nil {
			return err
		}
		return printer.PrintObj(gangTable(rows, objs, format == "wide", now), out)
	}
	printer, err := flags.ToPrinter()
	if err != nil {
		return err
	}
	if format == "name" {
		for _, o := range objs {
			if err := printer.PrintObj(o, out); err != nil {
				return err
			}
		}
		return nil
	}
	return printer.PrintObj(gangList(objs), out)
}

func tablePrinter(flags *get.PrintFlags, withNamespace bool) (printers.ResourcePrinter, error) {
	copied := flags.Copy()
	human := *copied.HumanReadableFlags
	copied.HumanReadableFlags = &human
	if withNamespace {
		if err := copied.EnsureWithNamespace(); err != nil {
			return nil, err
		}
	}
	return copied.ToPrinter()
}

// viewObjects are the gangs' objects: each gang's creation is its first
// member's (its Workload's while it has none), its labels its Workload's.
func viewObjects(rows []gangview.Gang, pods []v1.Pod, workloads gangview.Workloads) []*unstructured.Unstructured {
	type workloadMeta struct {
		created time.Time
		labels  map[string]string
	}
	meta := map[gang.WorkloadKey]workloadMeta{}
	for _, w := range workloads.Native {
		meta[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name}] = workloadMeta{w.CreationTimestamp.Time, w.Labels}
	}
	for _, w := range workloads.Portable {
		meta[gang.WorkloadKey{Namespace: w.Namespace, Name: w.Name, Source: gang.SourcePortable}] = workloadMeta{w.CreationTimestamp.Time, w.Labels}
	}
	for _, pg := range workloads.PodGroups {
		meta[gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup}] = workloadMeta{pg.CreationTimestamp.Time, pg.Labels}
	}
	first := map[gang.Key]time.Time{}
	for i := range pods {
		key, ok := gang.KeyOf(&pods[i])
		if !ok {
			continue
		}
		if t, seen := first[key]; !seen || pods[i].CreationTimestamp.Time.Before(t) {
			first[key] = pods[i].CreationTimestamp.Time
		}
	}
	objs := make([]*unstructured.Unstructured, len(rows))
	for i, g := range rows {
		w := meta[g.Key.WorkloadKey()]
		created, ok := first[g.Key]
		if !ok {
			created = w.created
		}
		objs[i] = gangObject(g, created, w.labels)
	}
	return objs
}
