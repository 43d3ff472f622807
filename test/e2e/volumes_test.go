package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
)

// A gang whose members use WaitForFirstConsumer claims: the scheduler's
// volume binder picks a local PersistentVolume on each member's node and
// writes the binding (PV and claim updates), the controller-manager
// completes it. The chart's RBAC for those writes is checked against
// kube-scheduler's own roles in TestChartRBACCoversKubeScheduler.
func TestGangWithWaitForFirstConsumerClaims(t *testing.T) {
	class := envconf.RandomName("wcs-e2e-local", 24)
	var volumes []string
	f := features.New("a gang whose members claim local volumes bound on first use").
		Setup(withNamespace("volumes")).
		Assess("both members bind, each with the volume of its node", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c, ns := clientset(t, cfg), namespaceOf(ctx)
			nodes := schedulableNodeNames(ctx, t, c)
			if len(nodes) < 2 {
				t.Skipf("%d schedulable nodes, the case needs 2", len(nodes))
			}
			if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
				ObjectMeta:        metav1.ObjectMeta{Name: class},
				Provisioner:       "kubernetes.io/no-provisioner",
				VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			one := resource.MustParse("1Gi")
			for i, node := range nodes[:2] {
				pv := &v1.PersistentVolume{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", class, i)},
					Spec: v1.PersistentVolumeSpec{
						Capacity:               v1.ResourceList{v1.ResourceStorage: one},
						AccessModes:            []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
						StorageClassName:       class,
						PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disk"}},
						NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
							MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
						}}}},
					},
				}
				if _, err := c.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				volumes = append(volumes, pv.Name)
			}
			create(ctx, t, c, ns, gangWorkload("stateful", "workers", 2))
			for i := 0; i < 2; i++ {
				claim := &v1.PersistentVolumeClaim{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data-%d", i)},
					Spec: v1.PersistentVolumeClaimSpec{
						StorageClassName: ptr.To(class),
						AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
						Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: one}},
					},
				}
				if _, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				pod := &v1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w-%d", i)},
					Spec: v1.PodSpec{
						SchedulerName: schedulerName,
						WorkloadRef:   &v1.WorkloadReference{Name: "stateful", PodGroup: "workers"},
						Containers:    []v1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10", Resources: requests("100m")}},
						Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
							PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name}}}},
					},
				}
				if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			poll(ctx, t, 2*time.Minute, "both members bound with their claims", func() (bool, error) {
				for i := 0; i < 2; i++ {
					pod, err := c.CoreV1().Pods(ns).Get(ctx, fmt.Sprintf("w-%d", i), metav1.GetOptions{})
					if err != nil || pod.Spec.NodeName == "" {
						return false, nil
					}
					claim, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, fmt.Sprintf("data-%d", i), metav1.GetOptions{})
					if err != nil || claim.Status.Phase != v1.ClaimBound {
						return false, nil
					}
				}
				return true, nil
			})
			return ctx
		}).
		Teardown(deleteNamespace).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			c := clientset(t, cfg)
			for _, name := range volumes {
				if err := c.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
					t.Error(err)
				}
			}
			if err := c.StorageV1().StorageClasses().Delete(ctx, class, metav1.DeleteOptions{}); err != nil {
				t.Logf("deleting StorageClass %s: %v", class, err)
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}
