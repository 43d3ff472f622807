package workloadref

import (
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1alpha1 "k8s.io/api/scheduling/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	wcsv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/scheduling/v1alpha1"
	"github.com/workload-coscheduling/workload-coscheduling/pkg/gang"
)

// FuzzResolve feeds arbitrary Workloads (as YAML, the way a user writes them;
// the API server validates less in a fuzzer than in life) and arbitrary pod
// references, by spec.workloadRef or by the portable annotations, through the
// resolver: it must not panic, must name what is
// missing when it refuses, and a policy it returns must be a gang of
// minCount >= 1 or basic, with a Permit timeout within the framework's cap.
func FuzzResolve(f *testing.F) {
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: [{name: workers, policy: {gang: {minCount: 4}}}]}", "job", "workers", "0", "", false)
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: [{name: workers, policy: {gang: {minCount: 4}}}]}", "job", "workers", "0", "", true)
	f.Add("metadata: {name: job, namespace: ns, annotations: {workload-coscheduling.io/permit-waiting-time-seconds: '30'}}\nspec: {podGroups: [{name: a, policy: {basic: {}}}, {name: b, policy: {gang: {minCount: 1}}}]}", "job", "b", "", "", false)
	f.Add("metadata: {name: job, namespace: ns, annotations: {workload-coscheduling.io/permit-waiting-time-seconds: '30'}}\nspec: {podGroups: [{name: a, policy: {basic: {}}}, {name: b, policy: {gang: {minCount: 1}}}]}", "job", "b", "", "", true)
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: []}", "job", "workers", "", "", false)
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: []}", "job", "workers", "", "", true)
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: [{name: w, policy: {}}]}", "job", "w", "x", "", false)
	f.Add("metadata: {name: job, namespace: ns}\nspec: {podGroups: [{name: w, policy: {}}]}", "job", "w", "x", "", true)
	f.Add("metadata: {name: other, namespace: ns}", "job", "w", "", "", false)
	f.Add("metadata: {name: other, namespace: ns}", "job", "w", "", "", true)
	f.Add("metadata: {name: job, namespace: ns, annotations: {workload-coscheduling.io/permit-waiting-time-seconds: '99999999999999999999'}}", "job", "w", "", "", false)
	f.Add("metadata: {name: job, namespace: ns, annotations: {workload-coscheduling.io/permit-waiting-time-seconds: '99999999999999999999'}}", "job", "w", "", "", true)
	f.Fuzz(func(t *testing.T, workloadYAML, name, podGroup, replicaKey, annotation string, portable bool) {
		var w schedulingv1alpha1.Workload
		if err := yaml.Unmarshal([]byte(workloadYAML), &w); err != nil {
			return
		}
		w.Namespace = "ns"
		if annotation != "" {
			if w.Annotations == nil {
				w.Annotations = map[string]string{}
			}
			w.Annotations[PermitWaitingTimeAnnotation] = annotation
		}
		r := New(true, nil)
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
		if portable {
			// The same Workload as a portable one, referenced by annotations.
			var pw wcsv1alpha1.Workload
			if err := yaml.Unmarshal([]byte(workloadYAML), &pw); err != nil {
				return
			}
			pw.Namespace, pw.Annotations = "ns", w.Annotations
			r.ServePortable(nil)
			r.SetPortableWorkload(&pw)
			pod.Annotations = map[string]string{gang.WorkloadAnnotation: name, gang.PodGroupAnnotation: podGroup}
			if replicaKey != "" {
				pod.Annotations[gang.ReplicaKeyAnnotation] = replicaKey
			}
		} else {
			r.SetWorkload(&w)
			pod.Spec.WorkloadRef = &v1.WorkloadReference{Name: name, PodGroup: podGroup, PodGroupReplicaKey: replicaKey}
		}
		policy, reason := r.Resolve(pod)
		if reason != nil {
			if reason.Code == "" || reason.Message == "" {
				t.Fatalf("a refusal without a code or message: %+v", reason)
			}
			switch reason.Code {
			case InvalidReference:
				if !portable {
					t.Errorf("%s for a spec.workloadRef: %s", reason.Code, reason.Message)
				}
				return
			case "WorkloadNotFound":
				if !strings.Contains(reason.Message, strconv.Quote(name)) {
					t.Errorf("%s does not name Workload %q: %s", reason.Code, name, reason.Message)
				}
			case "PodGroupNotFound":
				if !strings.Contains(reason.Message, strconv.Quote(podGroup)) {
					t.Errorf("%s does not name podGroup %q: %s", reason.Code, podGroup, reason.Message)
				}
			default:
				t.Errorf("unexpected reason %s", reason.Code)
			}
			return
		}
		if policy.MinCount < 0 || policy.PermitTimeout < 0 || policy.PermitTimeout > MaxPermitWaitingTime {
			t.Errorf("policy out of range: %+v", policy)
		}
		timeout, problem := PermitTimeoutOf(&w)
		if timeout != policy.PermitTimeout {
			t.Errorf("PermitTimeoutOf = %v, the policy says %v", timeout, policy.PermitTimeout)
		}
		if value, ok := w.Annotations[PermitWaitingTimeAnnotation]; ok && timeout != time.Duration(0) && problem == "" {
			if strings.TrimSpace(value) != value {
				t.Errorf("annotation %q with spaces accepted as %v", value, timeout)
			}
		}
		key, ok := gang.KeyOf(pod)
		if !ok || key.Workload != name || key.PodGroup != podGroup || key.ReplicaKey != replicaKey || (key.Source == gang.SourcePortable) != portable {
			t.Errorf("KeyOf(%+v) = %+v, %v", pod.Spec.WorkloadRef, key, ok)
		}
	})
}
