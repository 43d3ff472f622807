package workloadcoscheduling

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	splisters "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/listers/schedulerplugins/v1alpha1"
)

// statusBatch is how long the status writer collects changes before it
// writes: a gang of 1000 that binds costs a few writes, not 1000.
const statusBatch = time.Second

// podGroupStatus keeps the status of PodGroups current, as Coscheduling's
// controller does (gang.PodGroupStatus has the rules). Only the leader
// writes: it starts when this replica leads (leader.go). It reads its own informer of the labelled pods, since the
// scheduler's leaves out finished ones, and marks a PodGroup dirty on any
// change of them; every statusBatch it writes the dirty PodGroups whose
// status differs.
type podGroupStatus struct {
	mu    sync.Mutex
	dirty map[gang.WorkloadKey]struct{}
	kick  chan struct{}
}

func newPodGroupStatus() *podGroupStatus {
	return &podGroupStatus{dirty: map[gang.WorkloadKey]struct{}{}, kick: make(chan struct{}, 1)}
}

// touch marks the PodGroup for the next write.
func (s *podGroupStatus) touch(key gang.WorkloadKey) {
	s.mu.Lock()
	s.dirty[key] = struct{}{}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *podGroupStatus) take() map[gang.WorkloadKey]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty := s.dirty
	s.dirty = map[gang.WorkloadKey]struct{}{}
	return dirty
}

// podGroupPodsIndex indexes the writer's pods by the PodGroup they belong to.
const podGroupPodsIndex = "podGroup"

func podGroupOf(obj interface{}) (gang.WorkloadKey, bool) {
	pod := podFrom(obj)
	if pod == nil {
		return gang.WorkloadKey{}, false
	}
	key, ok := gang.KeyOf(pod)
	if !ok || key.Source != gang.SourcePodGroup {
		return gang.WorkloadKey{}, false
	}
	return key.WorkloadKey(), true
}

// run waits for leading to close, then writes statuses until ctx ends.
func (s *podGroupStatus) run(ctx context.Context, kube kubernetes.Interface, client versioned.Interface,
	podGroups splisters.PodGroupLister, leading <-chan struct{}) {
	select {
	case <-leading:
	case <-ctx.Done():
		return
	}
	logger := klog.FromContext(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = gang.PodGroupLabel
	}))
	pods := factory.Core().V1().Pods().Informer()
	err := pods.AddIndexers(cache.Indexers{podGroupPodsIndex: func(obj interface{}) ([]string, error) {
		if key, ok := podGroupOf(obj); ok {
			return []string{key.Namespace + "/" + key.Name}, nil
		}
		return nil, nil
	}})
	if err == nil {
		touch := func(obj interface{}) {
			if key, ok := podGroupOf(obj); ok {
				s.touch(key)
			}
		}
		_, err = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: touch,
			UpdateFunc: func(oldObj, newObj interface{}) {
				touch(oldObj)
				touch(newObj)
			},
			DeleteFunc: touch,
		})
	}
	if err != nil {
		logger.Error(err, "PodGroup statuses will not be written")
		return
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
		return
	}
	// What changed before this replica led is written now.
	if all, err := podGroups.List(labels.Everything()); err == nil {
		for _, pg := range all {
			s.touch(podGroupKey(pg))
		}
	}
	logger.V(2).Info("Writing PodGroup statuses")
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(statusBatch):
		}
		for key := range s.take() {
			if err := s.write(ctx, client, podGroups, pods.GetIndexer(), key); err != nil {
				logger.V(2).Info("Writing a PodGroup's status failed; trying again", "podGroup", klog.KRef(key.Namespace, key.Name), "err", err)
				s.touch(key)
			}
		}
	}
}

// write updates the PodGroup's status when its pods say otherwise.
func (s *podGroupStatus) write(ctx context.Context, client versioned.Interface, podGroups splisters.PodGroupLister,
	pods cache.Indexer, key gang.WorkloadKey) error {
	pg, err := podGroups.PodGroups(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	objs, err := pods.ByIndex(podGroupPodsIndex, key.Namespace+"/"+key.Name)
	if err != nil {
		return err
	}
	members := make([]*v1.Pod, 0, len(objs))
	for _, obj := range objs {
		members = append(members, obj.(*v1.Pod))
	}
	status := gang.PodGroupStatus(pg, members, metav1.Now())
	if equality.Semantic.DeepEqual(status, pg.Status) {
		return nil
	}
	updated := pg.DeepCopy()
	updated.Status = status
	_, err = client.SchedulerPluginsV1alpha1().PodGroups(key.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
