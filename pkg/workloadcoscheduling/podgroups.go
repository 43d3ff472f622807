package workloadcoscheduling

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	wcsinformers "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/informers/externalversions"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// ReasonInvalidScheduleTimeout: a PodGroup's scheduleTimeoutSeconds is
// ignored or clamped; on the PodGroup.
const ReasonInvalidScheduleTimeout = "InvalidScheduleTimeout"

// startPodGroups watches scheduler-plugins' PodGroups, the third source of
// gangs, wakes the pods that waited for their API, and has their status
// kept by the leader (podGroupStatus).
func (pl *WorkloadCoscheduling) startPodGroups(ctx context.Context, logger klog.Logger, client versioned.Interface) error {
	factory := wcsinformers.NewSharedInformerFactory(client, 0)
	podGroups := factory.SchedulerPlugins().V1alpha1().PodGroups()
	_, err := podGroups.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { pl.podGroupAdded(logger, obj.(*spv1alpha1.PodGroup)) },
		UpdateFunc: func(oldObj, newObj interface{}) {
			pl.podGroupUpdated(logger, oldObj.(*spv1alpha1.PodGroup), newObj.(*spv1alpha1.PodGroup))
		},
		DeleteFunc: func(obj interface{}) {
			pg, ok := obj.(*spv1alpha1.PodGroup)
			if d, isTombstone := obj.(cache.DeletedFinalStateUnknown); isTombstone {
				pg, ok = d.Obj.(*spv1alpha1.PodGroup)
			}
			if ok {
				pl.resolver.DeletePodGroup(pg)
				pl.workloadDeleted(logger, pg, gang.SourcePodGroup)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podGroups.Informer().HasSynced) {
		return fmt.Errorf("%s: PodGroups never synced", Name)
	}
	pl.resolver.ServePodGroups(podGroups.Lister())
	logger.Info("Watching PodGroups")
	pl.activateSource(logger, gang.SourcePodGroup, "PodGroups served")
	go pl.status.run(ctx, pl.handle.ClientSet(), client, podGroups.Lister(), pl.leading)
	return nil
}

// podGroupAdded records the PodGroup, then wakes the gang that waited for it.
func (pl *WorkloadCoscheduling) podGroupAdded(logger klog.Logger, pg *spv1alpha1.PodGroup) {
	pl.resolver.SetPodGroup(pg)
	pl.checkPodGroup(pg)
	pl.wakeGangsOf(logger, podGroupKey(pg), "PodGroup added")
	pl.status.touch(podGroupKey(pg))
}

// podGroupUpdated records a changed spec: a new minMember applies to the
// gang's next attempt, and a smaller one may complete its quorum now.
func (pl *WorkloadCoscheduling) podGroupUpdated(logger klog.Logger, old, pg *spv1alpha1.PodGroup) {
	if old.Generation == pg.Generation && equality.Semantic.DeepEqual(old.Annotations, pg.Annotations) {
		return // its status, which this plugin writes
	}
	pl.resolver.SetPodGroup(pg)
	pl.checkPodGroup(pg)
	pl.wakeGangsOf(logger, podGroupKey(pg), "PodGroup changed")
	pl.status.touch(podGroupKey(pg))
}

func podGroupKey(pg *spv1alpha1.PodGroup) gang.WorkloadKey {
	return gang.WorkloadKey{Namespace: pg.Namespace, Name: pg.Name, Source: gang.SourcePodGroup}
}

// checkPodGroup tells the user, on the PodGroup, when its
// scheduleTimeoutSeconds is ignored or clamped, or a topology annotation
// ignored. Only the leader tells (leader.go); it checks every PodGroup it
// knows when it starts to lead.
func (pl *WorkloadCoscheduling) checkPodGroup(pg *spv1alpha1.PodGroup) {
	if !pl.isLeading() {
		return
	}
	if _, problem := workloadref.ScheduleTimeoutOf(pg); problem != "" {
		pl.sched.EventRecorder().Eventf(pg, nil, v1.EventTypeWarning, ReasonInvalidScheduleTimeout, "Scheduling", problem)
	}
	_, problems := workloadref.TopologyOf(pg)
	for _, problem := range problems {
		pl.sched.EventRecorder().Eventf(pg, nil, v1.EventTypeWarning, ReasonInvalidTopology, "Scheduling", problem)
	}
}
