package workloadcoscheduling

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	wcsinformers "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/informers/externalversions"
)

// The scheduler's event recorder finds an object's kind in client-go's
// scheme: portable Workloads and PodGroups must be there for events on them.
func init() {
	utilruntime.Must(wcsv1alpha1.AddToScheme(clientgoscheme.Scheme))
	utilruntime.Must(spv1alpha1.AddToScheme(clientgoscheme.Scheme))
}

// crdRecheck is how often the plugin asks discovery again for an API of
// custom resources (portable Workloads, PodGroups) while its CRD is not
// installed.
const crdRecheck = 10 * time.Second

// watchWhenServed runs start once groupVersion serves resource: at once if it
// does, or when its CRD is installed later, without a restart. The
// scheduler's informer factory knows no CRDs, so the plugin has its own.
func (pl *WorkloadCoscheduling) watchWhenServed(ctx context.Context, groupVersion, resource string,
	start func(context.Context, klog.Logger, versioned.Interface) error) {
	logger := klog.FromContext(ctx).WithValues("groupVersion", groupVersion, "resource", resource)
	for {
		served, err := apiServed(pl.handle, groupVersion, resource)
		switch {
		case err != nil:
			logger.V(2).Info("Discovery failed; asking again later", "err", err)
		case served:
			client, err := crdClient(pl.handle.KubeConfig())
			if err == nil {
				err = start(ctx, logger, client)
			}
			if err == nil {
				return
			}
			logger.Error(err, "Watching failed; trying again later")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(crdRecheck):
		}
	}
}

// crdClient is a client of this module's generated API, in JSON: custom
// resources have no protobuf encoding.
func crdClient(kubeConfig *rest.Config) (versioned.Interface, error) {
	cfg := rest.CopyConfig(kubeConfig)
	cfg.ContentType, cfg.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	return versioned.NewForConfig(cfg)
}

// startPortable watches portable Workloads and wakes the pods that waited
// for their API.
func (pl *WorkloadCoscheduling) startPortable(ctx context.Context, logger klog.Logger, client versioned.Interface) error {
	factory := wcsinformers.NewSharedInformerFactory(client, 0)
	workloads := factory.Scheduling().V1alpha1().Workloads()
	_, err := workloads.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			w := obj.(*wcsv1alpha1.Workload)
			pl.resolver.SetPortableWorkload(w)
			pl.workloadArrived(logger, w, gang.SourcePortable)
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, w := oldObj.(*wcsv1alpha1.Workload), newObj.(*wcsv1alpha1.Workload)
			pl.resolver.SetPortableWorkload(w)
			if old.Annotations[gang.PermitWaitingTimeAnnotation] != w.Annotations[gang.PermitWaitingTimeAnnotation] {
				pl.checkAnnotations(w)
			}
		},
		DeleteFunc: func(obj interface{}) {
			w, ok := obj.(*wcsv1alpha1.Workload)
			if d, isTombstone := obj.(cache.DeletedFinalStateUnknown); isTombstone {
				w, ok = d.Obj.(*wcsv1alpha1.Workload)
			}
			if ok {
				pl.resolver.DeletePortableWorkload(w)
				pl.workloadDeleted(logger, w, gang.SourcePortable)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), workloads.Informer().HasSynced) {
		return fmt.Errorf("%s: portable Workloads never synced", Name)
	}
	pl.resolver.ServePortable(workloads.Lister())
	logger.Info("Watching portable Workloads")
	pl.activateSource(logger, gang.SourcePortable, "portable Workloads served")
	return nil
}

// activateSource has the queue judge again the members of every gang of the
// source: they waited for its API.
func (pl *WorkloadCoscheduling) activateSource(logger klog.Logger, source gang.Source, why string) {
	var keys []gang.Key
	pl.index.Each(pl.now(), func(s gang.Summary) {
		if s.Key.Source == source {
			keys = append(keys, s.Key)
		}
	})
	for _, key := range keys {
		pl.activate(logger, key, why)
	}
}
