package workloadcoscheduling

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/workloadref"
)

// carryOut does what a transition of the gang state machine decided: reject
// or allow the members waiting at Permit, count the attempt, tell the user,
// arm the backoff, wake the gang. why says why an attempt failed (for the
// events and the rejected members); it returns the message the members were
// rejected with, or "" when nothing failed.
func (pl *WorkloadCoscheduling) carryOut(ctx context.Context, key gang.Key, e gang.Effects, why string) string {
	logger := klog.FromContext(ctx)
	msg := ""
	if e.RolledBack {
		msg = why
		if e.Backoff > 0 {
			msg = fmt.Sprintf("%s; backing off for %v", why, e.Backoff)
		}
		rejected := pl.reject(e.Reject, msg)
		gangAttempts.WithLabelValues(string(e.Outcome)).Inc()
		membersRolledBack.Add(float64(rejected))
		if e.Waited > 0 {
			permitWaitDuration.WithLabelValues("rolled_back").Observe(e.Waited.Seconds())
		}
		reason := ReasonGangRolledBack
		if e.Outcome == gang.OutcomeMinResources {
			reason = ReasonMinResourcesUnfit
		}
		pl.tellWorkload(key, v1.EventTypeWarning, reason, msg)
		logger.V(2).Info("Gang attempt failed, rolled back", "gang", key, "outcome", e.Outcome, "rejectedWaiting", rejected, "backoff", e.Backoff, "reason", why)
		// Without a gang backoff (members are bound: they must be followed
		// soon) the members come back through the framework's own per-pod
		// backoff, which keeps a fault that repeats (a binding refused
		// again and again) from spinning.
		if e.Backoff > 0 {
			time.AfterFunc(e.Backoff, func() { pl.activate(logger, key, "backoff over") })
		}
		if e.FellBack {
			// The next topology level is tried at once: the members without a
			// node now (the one in this cycle is requeued when it is done),
			// and those just rejected at Permit once they are back in the
			// queue.
			pl.activate(logger, key, "falling back a topology level")
			time.AfterFunc(fallbackRequeue, func() { pl.activate(logger, key, "falling back a topology level") })
		}
		if e.Nominated {
			pl.clearNominations(ctx, key)
		}
	}
	if e.Admitted {
		gangAttempts.WithLabelValues(string(gang.OutcomeAdmitted)).Inc()
		permitWaitDuration.WithLabelValues(string(gang.OutcomeAdmitted)).Observe(e.Waited.Seconds())
		// An untroubled gang's admission is in its pods' Scheduled events and
		// the metrics; one the user heard about before gets its ending.
		if e.Eventful {
			pl.tellWorkload(key, v1.EventTypeNormal, ReasonGangAdmitted,
				fmt.Sprintf("gang %s has %d members placed, its quorum: all go to binding", key, e.Counts.Placed()))
		}
		pl.allow(e.Allow)
	}
	if e.Completed {
		gangAdmissionDuration.Observe(e.Took.Seconds())
	}
	if e.Activate && !e.RolledBack {
		pl.activate(logger, key, "gang quorum reached")
	}
	return msg
}

// reject rejects the listed members that wait at Permit and returns how many
// did.
func (pl *WorkloadCoscheduling) reject(uids []types.UID, msg string) int {
	rejected := 0
	for _, uid := range uids {
		if wp := pl.sched.GetWaitingPod(uid); wp != nil {
			wp.Reject(Name, msg)
			rejected++
		}
	}
	return rejected
}

// allow lets the listed members that wait at Permit go to binding.
func (pl *WorkloadCoscheduling) allow(uids []types.UID) {
	for _, uid := range uids {
		if wp := pl.sched.GetWaitingPod(uid); wp != nil {
			wp.Allow(Name)
		}
	}
}

// activate has the queue judge the gang's members without a node again.
func (pl *WorkloadCoscheduling) activate(logger klog.Logger, key gang.Key, why string) {
	if pods := pl.index.PendingPods(key); len(pods) > 0 {
		logger.V(4).Info("Activating gang members", "gang", key, "reason", why, "pods", len(pods))
		pl.sched.Activate(logger, pods)
	}
}

// fallbackRequeue is when a gang falling back a topology level is woken a
// second time: by then the members its rollback rejected at Permit are
// back in the queue (their Unreserve runs in their binding goroutines).
const fallbackRequeue = time.Second

// permitBackstop is how long the framework lets a member wait at Permit.
// The gang's own deadline (armDeadline) ends the attempt first, for all its
// members at once; the framework's per-member timer is only a backstop.
const permitBackstop = 30 * time.Second

// attemptTimeout is how long an attempt of the gang may wait at Permit for
// its quorum: the Workload's annotation, else the plugin's args, kept below
// the framework's cap so the backstop never fires first.
func (pl *WorkloadCoscheduling) attemptTimeout(policy workloadref.Policy) time.Duration {
	timeout := pl.permitTimeout
	if policy.PermitTimeout > 0 {
		timeout = policy.PermitTimeout
	}
	return min(timeout, workloadref.MaxPermitWaitingTime-permitBackstop)
}

// permitBackstop returns the framework's timeout for a waiting member.
func (pl *WorkloadCoscheduling) permitBackstop(policy workloadref.Policy) time.Duration {
	return pl.attemptTimeout(policy) + permitBackstop
}

// armDeadline ends the gang's attempt when it has not reached its quorum by
// timeout: one deadline per attempt, from its first reservation, for all
// its members.
func (pl *WorkloadCoscheduling) armDeadline(logger klog.Logger, key gang.Key, attempt uint64, timeout time.Duration) {
	time.AfterFunc(timeout, func() {
		e := pl.index.Fail(key, attempt, gang.OutcomePermitTimeout, pl.now())
		if e.RolledBack {
			pl.carryOut(klog.NewContext(context.Background(), logger), key, e,
				fmt.Sprintf("gang %s rejected: timeout: fewer than minCount members were reserved within %v", key, timeout))
		}
	})
}
