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

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/generated/clientset/versioned"
	wcsinformers "github.com/workload-coscheduling/workload-coscheduling/pkg/generated/informers/externalversions"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// The scheduler's event recorder finds an object's kind in client-go's
// scheme: portable Workloads must be there for events on them.
func init() {
	utilruntime.Must(wcsv1alpha1.AddToScheme(clientgoscheme.Scheme))
}

// portableRecheck is how often the plugin asks discovery again for portable
// Workloads while their CRD is not installed.
const portableRecheck = 10 * time.Second

// watchPortable starts watching portable Workloads once their CRD is served:
// at once if it is, or when it is installed later, without a restart. The
// scheduler's informer factory knows no CRDs, so the plugin has its own.
func (pl *WorkloadCoscheduling) watchPortable(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for {
		served, err := apiServed(pl.handle, workloadref.PortableGroupVersion)
		switch {
		case err != nil:
			logger.V(2).Info("Discovery of portable Workloads failed; asking again later", "err", err)
		case served:
			if err := pl.startPortable(ctx, logger); err != nil {
				logger.Error(err, "Watching portable Workloads failed; trying again later")
				break
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(portableRecheck):
		}
	}
}

func (pl *WorkloadCoscheduling) startPortable(ctx context.Context, logger klog.Logger) error {
	cfg := rest.CopyConfig(pl.handle.KubeConfig())
	// Custom resources have no protobuf encoding.
	cfg.ContentType, cfg.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := wcsinformers.NewSharedInformerFactory(client, 0)
	workloads := factory.Scheduling().V1alpha1().Workloads()
	_, err = workloads.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			w := obj.(*wcsv1alpha1.Workload)
			pl.resolver.SetPortableWorkload(w)
			pl.workloadArrived(logger, w, true)
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
				pl.workloadDeleted(logger, w, true)
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
	logger.Info("Watching portable Workloads", "groupVersion", workloadref.PortableGroupVersion)
	// The members that waited for the API are judged again.
	var keys []gang.Key
	pl.index.Each(pl.now(), func(s gang.Summary) {
		if s.Key.Portable {
			keys = append(keys, s.Key)
		}
	})
	for _, key := range keys {
		pl.activate(logger, key, "portable Workloads served")
	}
	return nil
}
