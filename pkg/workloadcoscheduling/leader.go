package workloadcoscheduling

import (
	"context"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
)

// Leadership. kube-scheduler tells its plugins nothing of leader election,
// yet it starts its event broadcaster, informers and queue before it is
// elected: a standby runs PreEnqueue and the informer handlers too, and
// would record every waiting reason and invalid annotation a second time,
// and write PodGroup status beside the leader. So the plugin tells users
// and writes status only once it leads, which it learns from either of two
// things only the leader has: a scheduling cycle (PreFilter), or its
// elector's gauge leader_election_master_status at 1 in this process's
// registry (the elector sets it to 0 when it starts and to 1 once it holds
// the lease; the process exits when it loses it). Without leader election
// there is no gauge: when none has appeared electionGrace after the
// informers synced (the elector starts right after they do), the replica is
// the only one and leads.

// electionPoll is how often a replica that does not lead yet reads the gauge.
const electionPoll = 2 * time.Second

// electionGrace is how long after the informers synced the gauge may take
// to appear before the replica takes it that leader election is off.
const electionGrace = 5 * time.Second

// markLeading records that this replica leads; it stays so.
func (pl *WorkloadCoscheduling) markLeading() {
	pl.leadOnce.Do(func() { close(pl.leading) })
}

// isLeading reports whether this replica leads.
func (pl *WorkloadCoscheduling) isLeading() bool {
	select {
	case <-pl.leading:
		return true
	default:
		return false
	}
}

// watchElection marks this replica leading once its elector holds the lease,
// or once it is plain that there is no elector.
func (pl *WorkloadCoscheduling) watchElection(ctx context.Context) {
	synced := make([]cache.InformerSynced, len(pl.handlers))
	for i, h := range pl.handlers {
		synced[i] = h.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	logger := klog.FromContext(ctx)
	grace := time.Now().Add(electionGrace)
	tick := time.NewTicker(electionPoll / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pl.leading:
			return
		case <-tick.C:
		}
		switch elector, elected := electionState(); {
		case elected:
			logger.V(2).Info("This replica holds the leader election lease")
			pl.markLeading()
			return
		case !elector && time.Now().After(grace):
			logger.V(2).Info("No leader election in this scheduler: this replica leads")
			pl.markLeading()
			return
		case elector:
			tick.Reset(electionPoll)
		}
	}
}

// electionState reads this process's leader elector gauge: whether there is
// an elector, and whether it holds its lease.
func electionState() (elector, elected bool) {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return false, false
	}
	for _, f := range families {
		if f.GetName() != "leader_election_master_status" {
			continue
		}
		for _, m := range f.GetMetric() {
			elector = true
			if m.GetGauge().GetValue() == 1 {
				return true, true
			}
		}
	}
	return elector, false
}
