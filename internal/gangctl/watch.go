package gangctl

import (
	"context"
	"errors"
	"io"
	"reflect"
	"time"

	v1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/kubectl/pkg/cmd/get"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gangview"
)

// watchGangs prints the gangs, then each gang again whenever its row
// changes, as kubectl get -w does (the header once). It watches pods, events
// and Workloads from where the list left them, so a quiet cluster costs
// nothing; when a watch ends (expired, or the connection dropped) it lists
// again and goes on. It returns when ctx ends.
func watchGangs(ctx context.Context, c Clients, ns, selector string, out io.Writer, flags *get.PrintFlags, withNamespace bool) error {
	printed := map[gang.Key]gangview.Gang{}
	headers := true
	for ctx.Err() == nil {
		// Watching from before the list: what changes while it runs is
		// applied after it (an object seen twice is simply written again).
		w, err := c.openWatches(ctx, ns, selector)
		if err != nil {
			return err
		}
		workloads, pods, events, err := List(ctx, c, ns, selector)
		if err != nil {
			w.stop()
			return err
		}
		state := newWatchState(workloads, pods, events, selector)
		err = state.follow(ctx, w, func() error {
			rows := gangview.Build(state.workloads(), state.podList(), state.eventList())
			var changed []gangview.Gang
			for _, g := range rows {
				if last, ok := printed[g.Key]; !ok || !reflect.DeepEqual(last, g) {
					changed = append(changed, g)
					printed[g.Key] = g
				}
			}
			if len(changed) == 0 {
				return nil
			}
			noHeaders := *flags.NoHeaders
			*flags.NoHeaders = noHeaders || !headers
			defer func() { *flags.NoHeaders = noHeaders }()
			headers = false
			return printGangs(out, flags, changed, viewObjects(changed, state.podList(), state.workloads()), withNamespace, time.Now())
		})
		w.stop()
		if err != nil && !errors.Is(err, errWatchEnded) {
			return err
		}
		// A watch the server keeps closing is not listed again in a tight loop.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

var errWatchEnded = errors.New("a watch ended")

// watches are the open watches of a namespace; a nil one is of an API the
// server does not serve.
type watches struct{ pods, events, native, portable, podGroups watch.Interface }

func (w watches) stop() {
	for _, wi := range []watch.Interface{w.pods, w.events, w.native, w.portable, w.podGroups} {
		if wi != nil {
			wi.Stop()
		}
	}
}

func (c Clients) openWatches(ctx context.Context, ns, selector string) (watches, error) {
	var w watches
	var err error
	if w.pods, err = c.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{}); err != nil {
		return w, err
	}
	if w.events, err = c.Kube.EventsV1().Events(ns).Watch(ctx, metav1.ListOptions{}); err != nil {
		w.stop()
		return w, err
	}
	opts := metav1.ListOptions{LabelSelector: selector}
	if w.native, err = c.Kube.SchedulingV1alpha1().Workloads(ns).Watch(ctx, opts); err != nil && !apierrors.IsNotFound(err) {
		w.stop()
		return w, err
	}
	if w.portable, err = c.Portable.SchedulingV1alpha1().Workloads(ns).Watch(ctx, opts); err != nil && !apierrors.IsNotFound(err) {
		w.stop()
		return w, err
	}
	if w.podGroups, err = c.Portable.SchedulerPluginsV1alpha1().PodGroups(ns).Watch(ctx, opts); err != nil && !apierrors.IsNotFound(err) {
		w.stop()
		return w, err
	}
	return w, nil
}

// watchState is what the view is built from, kept current by the watches:
// gang members, the events about them and the Workloads.
type watchState struct {
	selector  string
	pods      map[types.UID]v1.Pod
	events    map[types.UID]eventsv1.Event
	native    map[types.UID]schedulingv1alpha1.Workload
	portable  map[types.UID]wcsv1alpha1.Workload
	podGroups map[types.UID]spv1alpha1.PodGroup
}

func newWatchState(workloads gangview.Workloads, pods []v1.Pod, events []eventsv1.Event, selector string) *watchState {
	s := &watchState{selector: selector, pods: map[types.UID]v1.Pod{}, events: map[types.UID]eventsv1.Event{},
		native: map[types.UID]schedulingv1alpha1.Workload{}, portable: map[types.UID]wcsv1alpha1.Workload{},
		podGroups: map[types.UID]spv1alpha1.PodGroup{}}
	for _, p := range pods {
		s.pods[p.UID] = p
	}
	for _, e := range events {
		s.events[e.UID] = e
	}
	for _, w := range workloads.Native {
		s.native[w.UID] = w
	}
	for _, w := range workloads.Portable {
		s.portable[w.UID] = w
	}
	for _, pg := range workloads.PodGroups {
		s.podGroups[pg.UID] = pg
	}
	return s
}

// follow applies what the watches report and calls show at once, then at
// most twice a second while changes come. It returns errWatchEnded when a
// watch closes, nil when ctx ends.
func (s *watchState) follow(ctx context.Context, w watches, show func() error) error {
	if err := show(); err != nil {
		return err
	}
	channel := func(wi watch.Interface) <-chan watch.Event {
		if wi == nil {
			return nil
		}
		return wi.ResultChan()
	}
	pods, events, native, portable, podGroups := channel(w.pods), channel(w.events), channel(w.native), channel(w.portable), channel(w.podGroups)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	dirty := false
	for {
		var e watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if dirty {
				dirty = false
				if err := show(); err != nil {
					return err
				}
			}
			continue
		case e, ok = <-pods:
		case e, ok = <-events:
		case e, ok = <-native:
		case e, ok = <-portable:
		case e, ok = <-podGroups:
		}
		if !ok || e.Type == watch.Error {
			return errWatchEnded
		}
		dirty = s.apply(e) || dirty
	}
}

// apply records one watch event; it reports whether the view may change.
func (s *watchState) apply(e watch.Event) bool {
	gone := e.Type == watch.Deleted
	switch o := e.Object.(type) {
	case *v1.Pod:
		key, ok := gang.KeyOf(o)
		if !ok || (s.selector != "" && !s.selected(key.WorkloadKey())) {
			return false
		}
		if gone {
			delete(s.pods, o.UID)
		} else {
			s.pods[o.UID] = *o
		}
	case *eventsv1.Event:
		if gone || (o.Regarding.Kind != "Pod" && o.Regarding.Kind != "Workload" && o.Regarding.Kind != "PodGroup") {
			return false
		}
		s.events[o.UID] = *o
	case *schedulingv1alpha1.Workload:
		if gone {
			delete(s.native, o.UID)
		} else {
			s.native[o.UID] = *o
		}
	case *wcsv1alpha1.Workload:
		if gone {
			delete(s.portable, o.UID)
		} else {
			s.portable[o.UID] = *o
		}
	case *spv1alpha1.PodGroup:
		if gone {
			delete(s.podGroups, o.UID)
		} else {
			s.podGroups[o.UID] = *o
		}
	default:
		return false
	}
	return true
}

func (s *watchState) selected(w gang.WorkloadKey) bool {
	switch w.Source {
	case gang.SourcePortable:
		for _, x := range s.portable {
			if x.Namespace == w.Namespace && x.Name == w.Name {
				return true
			}
		}
		return false
	case gang.SourcePodGroup:
		for _, x := range s.podGroups {
			if x.Namespace == w.Namespace && x.Name == w.Name {
				return true
			}
		}
		return false
	}
	for _, x := range s.native {
		if x.Namespace == w.Namespace && x.Name == w.Name {
			return true
		}
	}
	return false
}

func (s *watchState) workloads() gangview.Workloads {
	var w gangview.Workloads
	for _, x := range s.native {
		w.Native = append(w.Native, x)
	}
	for _, x := range s.portable {
		w.Portable = append(w.Portable, x)
	}
	for _, x := range s.podGroups {
		w.PodGroups = append(w.PodGroups, x)
	}
	return w
}

func (s *watchState) podList() []v1.Pod {
	pods := make([]v1.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	return pods
}

func (s *watchState) eventList() []eventsv1.Event {
	events := make([]eventsv1.Event, 0, len(s.events))
	for _, e := range s.events {
		events = append(events, e)
	}
	return events
}
