package workloadcoscheduling

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	_ "k8s.io/component-base/metrics/prometheus/clientgo/leaderelection" // the elector's gauge, as the binary registers it
)

// electionState follows client-go's elector through the gauge the binary
// registers: none before the elector starts, 0 while it waits for the
// lease, 1 once it holds it.
func TestElectionState(t *testing.T) {
	if elector, elected := electionState(); elector || elected {
		t.Fatalf("before any elector: elector %v, elected %v", elector, elected)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: "kube-system", Name: "wcs-test"},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "me"},
	}
	// Another replica holds the lease.
	now := metav1.Now()
	held := resourcelock.LeaderElectionRecord{HolderIdentity: "other", LeaseDurationSeconds: 3600, AcquireTime: now, RenewTime: now}
	if err := lock.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	elected := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: "kube-scheduler",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
		Callbacks: leaderelection.LeaderCallbacks{OnStartedLeading: func(context.Context) { close(elected) }, OnStoppedLeading: func() {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go elector.Run(ctx)
	time.Sleep(300 * time.Millisecond)
	if elector, elected := electionState(); !elector || elected {
		t.Fatalf("a standby: elector %v, elected %v", elector, elected)
	}
	// The other replica goes: its lease is released.
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-elected:
	case <-time.After(10 * time.Second):
		t.Fatalf("the elector never took the lease")
	}
	if _, elected := electionState(); !elected {
		t.Fatalf("the leader does not read as elected")
	}
}
