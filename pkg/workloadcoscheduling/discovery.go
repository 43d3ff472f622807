package workloadcoscheduling

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// discoveryTimeout bounds how long the plugin waits at start for the API
// server to answer discovery.
const discoveryTimeout = 2 * time.Minute

// workloadAPIServed asks discovery whether built-in Workloads are served.
// Starting an informer for an API that is not served would block the
// scheduler's start on a cache that never syncs. A scheduler may start
// before its API server answers (a control plane booting, a pod restarted
// with it): the question is asked again until discoveryTimeout, as the
// scheduler's informers retry their lists, rather than failing the start.
func workloadAPIServed(ctx context.Context, handle fwk.Handle) (served bool, err error) {
	logger := klog.FromContext(ctx)
	poll := wait.PollUntilContextTimeout(ctx, time.Second, discoveryTimeout, true, func(context.Context) (bool, error) {
		served, err = apiServed(handle, workloadref.GroupVersion, "workloads")
		if err != nil {
			logger.V(2).Info("Discovery failed; asking again", "groupVersion", workloadref.GroupVersion, "err", err)
			return false, nil
		}
		return true, nil
	})
	if poll != nil && err == nil {
		err = poll
	}
	return served, err
}

// apiServed asks discovery whether groupVersion serves resource.
func apiServed(handle fwk.Handle, groupVersion, resource string) (bool, error) {
	resources, err := handle.ClientSet().Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: discovering %s: %w", Name, groupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}
