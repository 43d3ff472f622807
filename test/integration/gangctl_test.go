package integration

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/workload-coscheduling/workload-coscheduling/internal/gangctl"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of kubectl gang")

// gangctlCases run `kubectl gang` against the API server and compare its
// output with testdata/kubectl-gang/*.golden (go test -run TestWorkloadCoscheduling/kubectl -update
// rewrites them).
var gangctlCases = []clusterCase{
	{"kubectl gang lists and describes the gangs of a namespace", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "4")
		// Members created before their Workload: once it exists, both are
		// judged with the same count, so the output does not depend on timing.
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.createPod(t, ns, podSpec{name: "lost-0", workload: "lost", podGroup: "workers"})
		c.waitEvent(t, ns, "lost-0", "WorkloadNotFound", `Workload "lost"`)
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 3}, podGroup{name: "web"})
		c.waitEvent(t, ns, "job", "WaitingForGangMembers", "2/3 present")
		if _, err := c.client.SchedulingV1alpha1().Workloads(ns).Patch(context.Background(), "job", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"team":"vision"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		c.createPod(t, ns, podSpec{name: "web-0", workload: "job", podGroup: "web"})
		c.createPod(t, ns, podSpec{name: "tb-0", workload: "job", podGroup: "web", replicaKey: "tb"})
		c.waitBound(t, ns, 30*time.Second, "web-0", "tb-0")

		for _, run := range []struct {
			golden string
			args   []string
		}{
			{"list.golden", []string{"list"}},
			{"list-wide.golden", []string{"list", "-o", "wide"}},
			{"list.json.golden", []string{"list", "-o", "json"}},
			{"list.yaml.golden", []string{"list", "-o", "yaml"}},
			{"list.name.golden", []string{"list", "-o", "name"}},
			{"list-no-headers.golden", []string{"list", "--no-headers"}},
			{"list-selected.golden", []string{"list", "-l", "team=vision", "--show-labels"}},
			{"list.jsonpath.golden", []string{"list", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.state}{"\n"}{end}`}},
			{"list.custom-columns.golden", []string{"list", "-o", "custom-columns=GANG:.metadata.name,MIN:.spec.minCount,BOUND:.status.bound"}},
			{"describe.golden", []string{"describe", "job"}},
			{"describe-missing.golden", []string{"describe", "lost"}},
		} {
			out := c.kubectlGang(t, ns, run.args...)
			if strings.HasPrefix(run.golden, "describe") {
				// Events come in an order the test does not control: the
				// golden file stops at them, and they are checked apart.
				head, events, _ := strings.Cut(out, "Events:\n")
				if !strings.Contains(events, "WaitingForGangMembers") && !strings.Contains(events, "WorkloadNotFound") {
					t.Errorf("kubectl gang %s: no waiting event in %q", strings.Join(run.args, " "), events)
				}
				out = head
			}
			compareGolden(t, run.golden, timeless(out, strings.HasPrefix(run.golden, "list") && !strings.HasSuffix(run.golden, "json.golden") && !strings.HasSuffix(run.golden, "yaml.golden")))
		}

		// Other tests' namespaces are listed too: only ours is checked.
		all := strings.ReplaceAll(c.kubectlGang(t, "", "list", "-A"), ns, "NS")
		if !strings.HasPrefix(all, "NAMESPACE ") || !regexp.MustCompile(`(?m)^NS +job +workers `).MatchString(all) {
			t.Errorf("kubectl gang list -A lacks the namespace's gangs:\n%s", all)
		}

		empty := c.namespace(t)
		if out, errOut := c.kubectlGangErr(t, empty, "list"); out != "" || errOut != "No resources found in NS namespace.\n" {
			t.Errorf("kubectl gang list in an empty namespace: %q, %q; want only kubectl's No resources found", out, errOut)
		}
		if out := c.kubectlGang(t, empty, "list", "-o", "json"); !strings.Contains(out, `"kind": "List"`) || !strings.Contains(out, `"items": []`) {
			t.Errorf("kubectl gang list -o json in an empty namespace: %s, want an empty List", out)
		}
	}},
	{"kubectl gang list -w prints a gang again when it changes", func(t *testing.T, c *cluster) {
		ns := c.namespace(t)
		c.addNodes(t, ns, 1, "4")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		c.createPod(t, ns, podSpec{name: "w-0", workload: "job", podGroup: "workers"})
		c.waitEvent(t, ns, "job", "WaitingForGangMembers", "1/2 present")

		ctx, cancel := context.WithCancel(context.Background())
		out := &syncBuffer{}
		cmd := gangctl.NewCommand(out, io.Discard)
		cmd.SetArgs([]string{"--kubeconfig", c.kubeconfig, "--namespace", ns, "list", "-w"})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		waitOutput(t, out, "1/2 ")
		c.createPod(t, ns, podSpec{name: "w-1", workload: "job", podGroup: "workers"})
		c.waitBound(t, ns, 30*time.Second, "w-0", "w-1")
		waitOutput(t, out, "2/2 ")
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("kubectl gang list -w: %v", err)
		}
		if got := strings.Count(out.String(), "WORKLOAD"); got != 1 {
			t.Errorf("kubectl gang list -w printed the header %d times, want once:\n%s", got, out.String())
		}
		if !regexp.MustCompile(`(?m)^job +workers +- +gang\(2\) +2/2 +2 `).MatchString(out.String()) {
			t.Errorf("kubectl gang list -w never printed the gang bound:\n%s", out.String())
		}
	}},
}

// timeless writes the ages and creation times of the output as AGE and T,
// and, in a table, every run of blanks between columns as two: they depend
// on when the test ran.
func timeless(out string, table bool) string {
	out = regexp.MustCompile(`(?m)(creationTimestamp"?:) "?[0-9TZ:-]+"?`).ReplaceAllString(out, `$1 T`)
	if !table {
		return out
	}
	out = regexp.MustCompile(`  [0-9]+[smhd]([0-9]+[smh])?  `).ReplaceAllString(out, "  AGE  ")
	return regexp.MustCompile(`(?m)([^ ])  +`).ReplaceAllString(out, "$1  ")
}

// syncBuffer is a buffer written by the command's goroutine and read by the
// test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(out.String(), want) {
			return
		}
	}
	t.Fatalf("no %q in the output:\n%s", want, out.String())
}

// kubectlGang runs the command with the cluster's kubeconfig in namespace ns
// (empty: no --namespace) and returns its output, with ns written NS.
func (c *cluster) kubectlGang(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, _ := c.kubectlGangErr(t, ns, args...)
	return out
}

// kubectlGangErr is kubectlGang that also returns the standard error.
func (c *cluster) kubectlGangErr(t *testing.T, ns string, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := gangctl.NewCommand(&out, &errOut)
	full := []string{"--kubeconfig", c.kubeconfig}
	if ns != "" {
		full = append(full, "--namespace", ns)
	}
	cmd.SetArgs(append(full, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("kubectl gang %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	if ns == "" {
		return out.String(), errOut.String()
	}
	return strings.ReplaceAll(out.String(), ns, "NS"), strings.ReplaceAll(errOut.String(), ns, "NS")
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "kubectl-gang", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("kubectl gang output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
