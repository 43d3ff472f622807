package workloadcoscheduling

import (
	"context"
	"time"

	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
)

// Leadership. kube-scheduler tells its plugins nothing of leader election,
// and standbys run informers, queues and PreEnqueue too. Two things only
// the leader sees: a scheduling cycle (PreFilter), and its elector's gauge,
// leader_election_master_status, at 1 in this process's registry (the
// elector sets it to 0 when it starts and to 1 when it holds the lease; the
// process exits when it loses it). The gauge makes a new leader with nothing
// to schedule count as one; without leader election there is no gauge, and
// the first scheduling cycle is the signal.

// electionPoll is how often a replica that does not lead yet reads the gauge.
const electionPoll = 2 * time.Second

// markLeading records that this replica leads; it stays so.
func (pl *WorkloadCoscheduling) markLeading() {
	pl.leadOnce.Do(func() { close(pl.leading) })
}

// watchElection marks this replica leading once its elector holds the lease.
func (pl *WorkloadCoscheduling) watchElection(ctx context.Context) {
	tick := time.NewTicker(electionPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pl.leading:
			return
		case <-tick.C:
			if electedHere() {
				klog.FromContext(ctx).V(2).Info("This replica holds the leader election lease")
				pl.markLeading()
				return
			}
		}
	}
}

// electedHere reports whether this process's leader elector holds its lease.
func electedHere() bool {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return false
	}
	for _, f := range families {
		if f.GetName() != "leader_election_master_status" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				return true
			}
		}
	}
	return false
}
