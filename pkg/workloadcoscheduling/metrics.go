package workloadcoscheduling

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// The plugin's metrics, served with kube-scheduler's own on its secure
// /metrics endpoint. No label names a pod, a gang or a Workload: cardinality
// stays fixed whatever runs.
const metricsSubsystem = "workload_coscheduling"

// States of a waiting gang, the values of the state label.
const (
	stateWaitingForWorkload = "waiting_for_workload"
	stateWaitingForMembers  = "waiting_for_members"
	stateQueued             = "queued"
	stateReserving          = "reserving"
	stateBackingOff         = "backing_off"
)

var waitingStates = []string{stateWaitingForWorkload, stateWaitingForMembers, stateQueued, stateReserving, stateBackingOff}

var (
	gangAdmissionDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gang_admission_duration_seconds",
		Help:           "Time from the creation of a gang's first member until minCount members are bound.",
		Buckets:        metrics.ExponentialBuckets(0.05, 2, 15), // 50ms to ~14min
		StabilityLevel: metrics.ALPHA,
	})
	gangAttempts = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gang_attempts_total",
		Help:           "Attempts to place a gang, by result: admitted, rejected_in_postfilter, permit_timeout, bind_failure, member_rejected, member_deleted, node_deleted.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	membersRolledBack = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "members_rolled_back_total",
		Help:           "Gang members whose reservation was released because their gang's attempt failed.",
		StabilityLevel: metrics.ALPHA,
	})
	permitWaitDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "permit_wait_duration_seconds",
		Help:           "How long a gang's members waited at Permit in one attempt, from the first reservation until the gang was admitted or rolled back.",
		Buckets:        metrics.ExponentialBuckets(0.001, 4, 10), // 1ms to ~4min
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	preemptionAttempts = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "preemption_attempts_total",
		Help:           "Preemptions tried for a gang or a plain pod that fit no node, by result: preempted, futile (the gang would not fit even after evicting every candidate: nothing evicted), no_candidates.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	victimsPreempted = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "preemption_victims_total",
		Help:           "Victims of preemptions, by kind: pod (a plain pod) or gang (a whole gang).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind"})
	gangsWaitingDesc = metrics.NewDesc(metricsSubsystem+"_gangs_waiting",
		"Gangs not yet admitted, by state: waiting_for_workload, waiting_for_members, queued, reserving, backing_off.",
		[]string{"state"}, nil, metrics.ALPHA, "")
	gangsTrackedDesc = metrics.NewDesc(metricsSubsystem+"_gangs_tracked",
		"Gangs in the plugin's index (every gang with a member pod, admitted or not).",
		nil, nil, metrics.ALPHA, "")
)

var registerMetrics sync.Once

// gangCollector reports, at scrape time, the gangs of every plugin instance
// (one per profile) by state: the scheduling path pays nothing for it.
type gangCollector struct {
	metrics.BaseStableCollector
	mu      sync.Mutex
	plugins map[*WorkloadCoscheduling]struct{}
}

var collector = &gangCollector{plugins: map[*WorkloadCoscheduling]struct{}{}}

// register adds the plugin to the metrics, registering them on first use.
func (pl *WorkloadCoscheduling) registerMetrics() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(gangAdmissionDuration, gangAttempts, membersRolledBack, permitWaitDuration, preemptionAttempts, victimsPreempted)
		legacyregistry.CustomMustRegister(collector)
	})
	collector.mu.Lock()
	collector.plugins[pl] = struct{}{}
	collector.mu.Unlock()
}

func (pl *WorkloadCoscheduling) unregisterMetrics() {
	collector.mu.Lock()
	delete(collector.plugins, pl)
	collector.mu.Unlock()
}

func (c *gangCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- gangsWaitingDesc
	ch <- gangsTrackedDesc
}

func (c *gangCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c.mu.Lock()
	plugins := make([]*WorkloadCoscheduling, 0, len(c.plugins))
	for pl := range c.plugins {
		plugins = append(plugins, pl)
	}
	c.mu.Unlock()
	waiting := map[string]int{}
	tracked := 0
	for _, pl := range plugins {
		tracked += pl.index.Len()
		for state, n := range pl.waitingGangs(time.Now()) {
			waiting[state] += n
		}
	}
	for _, state := range waitingStates {
		ch <- metrics.NewLazyConstMetric(gangsWaitingDesc, metrics.GaugeValue, float64(waiting[state]), state)
	}
	ch <- metrics.NewLazyConstMetric(gangsTrackedDesc, metrics.GaugeValue, float64(tracked))
}

// waitingGangs counts the gangs not admitted yet by state. Basic podGroups
// are not gangs and are left out.
func (pl *WorkloadCoscheduling) waitingGangs(now time.Time) map[string]int {
	var gangs []gang.Summary
	pl.index.Each(now, func(s gang.Summary) { gangs = append(gangs, s) })
	states := map[string]int{}
	for _, g := range gangs {
		policy, reason := pl.resolver.ResolveKey(g.Key)
		switch {
		case reason != nil:
			states[stateWaitingForWorkload]++
		case !policy.IsGang() || g.Phase == gang.PhaseRunning || g.Phase == gang.PhaseAdmitted:
		case g.Phase == gang.PhaseBackingOff:
			states[stateBackingOff]++
		case g.Counts.Present < int(policy.MinCount):
			states[stateWaitingForMembers]++
		case g.Phase == gang.PhaseAttempting:
			states[stateReserving]++
		default:
			states[stateQueued]++
		}
	}
	return states
}
