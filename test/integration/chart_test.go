package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	spv1alpha1 "github.com/workload-coscheduling/workload-coscheduling/apis/schedulerplugins/v1alpha1"
)

const chartDir = "../../charts/workload-coscheduling"

// helm runs the helm that make builds (bin/helm, pinned in hack/tools/go.mod).
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join("..", "..", "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run the tests with make integration-test, which builds it", bin)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		err = errors.New(strings.TrimSpace(stderr.String()))
	}
	return out.String(), err
}

func helmTemplate(t *testing.T, release, namespace string, valuesFiles ...string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", "1.35.4"}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %v: %v", args, err)
	}
	return out
}

// decodeObjects splits a multi-document YAML into objects.
func decodeObjects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); err != nil {
			if err == io.EOF {
				return objs
			}
			t.Fatal(err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// apply creates every object through the API server, which validates it
// as it would for kubectl apply. Kinds the server does not serve (the
// Prometheus Operator's ServiceMonitor) are returned instead.
func (c *cluster) apply(t *testing.T, objs []*unstructured.Unstructured, dryRun bool) (unserved []string) {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.client.Discovery()))
	dyn := dynamic.NewForConfigOrDie(c.restConfig)
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			unserved = append(unserved, gvk.String())
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Create(context.Background(), obj, opts); err != nil {
			t.Fatalf("the API server refused %s %s/%s: %v", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return unserved
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// TestChart checks the Helm chart against an API server that enforces RBAC:
// it renders and lints, the server accepts what it renders, the RBAC allows
// what the scheduler needs and nothing more, and the scheduler run from the
// rendered configuration, as the rendered ServiceAccount, schedules a gang.
func TestChart(t *testing.T) {
	c := startCluster(t, append(workloadAPIFlags, "--authorization-mode=RBAC")...)
	allValues := filepath.Join(chartDir, "ci", "all-values.yaml")

	t.Run("lint, with the defaults and with every value set", func(t *testing.T) {
		for _, args := range [][]string{{"lint", chartDir}, {"lint", chartDir, "-f", allValues}} {
			if out, err := helm(t, args...); err != nil {
				t.Fatalf("helm %v: %v\n%s", args, err, out)
			}
		}
	})

	t.Run("values with a typo or a wrong type are refused", func(t *testing.T) {
		tests := map[string]string{
			"plugin:\n  permitWaitingTimeSecond: 30\n":   "permitWaitingTimeSecond",
			"replicas: two\n":                            "/replicas",
			"leaderElection:\n  enable: false\n":         "enable",
			"plugin:\n  permitWaitingTimeSeconds: 901\n": "permitWaitingTimeSeconds",
		}
		for values, want := range tests {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(values), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := helm(t, "template", "x", chartDir, "--kube-version", "1.35.4", "-f", file)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("values %q: error %v, want one naming %s", values, err, want)
			}
		}
	})

	t.Run("accepted as a subchart; refused by a cluster its kube-scheduler cannot serve", func(t *testing.T) {
		for _, version := range []string{"1.35.0", "1.36.2"} {
			if out, err := helm(t, "template", "x", chartDir, "--kube-version", version, "--set", "global.imageRegistry=example.com"); err != nil {
				t.Errorf("on %s with global values: %v\n%s", version, err, out)
			}
		}
		for _, version := range []string{"1.34.3", "1.37.0"} {
			if _, err := helm(t, "template", "x", chartDir, "--kube-version", version); err == nil || !strings.Contains(err.Error(), "incompatible with Kubernetes") {
				t.Errorf("on %s: %v, want the chart refused", version, err)
			}
		}
	})

	testChartFreeFormValues(t)

	t.Run("manifests/install.yaml is the chart's render", func(t *testing.T) {
		installed, err := os.ReadFile("../../manifests/install.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got := helmTemplate(t, "workload-coscheduling", "kube-system"); got != string(installed) {
			t.Fatalf("manifests/install.yaml differs from the chart's render: run make manifests")
		}
	})

	t.Run("the chart's configuration is the shipped one", func(t *testing.T) {
		cm := find(decodeObjects(t, helmTemplate(t, "workload-coscheduling", "kube-system")), "ConfigMap")
		rendered, _, _ := unstructured.NestedString(cm.Object, "data", "scheduler-config.yaml")
		shipped, err := os.ReadFile(shippedConfig)
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]interface{}
		if err := yaml.Unmarshal([]byte(rendered), &a); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(shipped, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("the chart's default configuration differs from %s:\n%s", shippedConfig, rendered)
		}
	})

	t.Run("every rendered object is accepted by the API server", func(t *testing.T) {
		if _, err := c.client.CoreV1().Namespaces().Create(context.Background(),
			&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: allValuesNamespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		unserved := c.apply(t, decodeObjects(t, helmTemplate(t, allValuesRelease, allValuesNamespace, allValues)), false)
		if len(unserved) != 1 || !strings.Contains(unserved[0], "ServiceMonitor") {
			t.Fatalf("kinds the API server does not serve: %v, want only the ServiceMonitor", unserved)
		}
		t.Logf("not checked, the API server does not serve them: %v", unserved)
		if unserved := c.apply(t, decodeObjects(t, helmTemplate(t, "workload-coscheduling", "kube-system")), false); len(unserved) > 0 {
			t.Fatalf("kinds the API server does not serve: %v", unserved)
		}
	})

	testChartAllValuesScheduler(t, c)

	t.Run("the samples are accepted by the API server", func(t *testing.T) {
		ns := c.namespace(t)
		files, err := filepath.Glob("../../manifests/samples/*.yaml")
		if err != nil || len(files) == 0 {
			t.Fatalf("no samples: %v", err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeObjects(t, string(raw))
			for _, o := range objs {
				o.SetNamespace(ns)
			}
			if unserved := c.apply(t, objs, true); len(unserved) > 0 {
				t.Fatalf("%s: kinds the API server does not serve: %v", f, unserved)
			}
			t.Logf("%s: %d objects accepted", filepath.Base(f), len(objs))
		}
	})

	// The objects of the default render exist from here on.
	sa := "system:serviceaccount:kube-system:workload-coscheduling"

	t.Run("RBAC allows what the scheduler needs and nothing more", func(t *testing.T) {
		tests := []struct {
			attrs authorizationv1.ResourceAttributes
			allow bool
		}{
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "binding", Namespace: "ml"}, true},
			{authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
			{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Subresource: "status", Namespace: "ml"}, true},
			{authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}, true},
			{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "persistentvolumes"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "persistentvolumeclaims", Namespace: "ml"}, true},
			{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "persistentvolumes"}, false},
			{authorizationv1.ResourceAttributes{Verb: "watch", Group: "scheduling.k8s.io", Resource: "workloads"}, true},
			{authorizationv1.ResourceAttributes{Verb: "watch", Group: "scheduling.workload-coscheduling.io", Resource: "workloads"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "scheduling.workload-coscheduling.io", Resource: "workloads", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "watch", Group: "scheduling.x-k8s.io", Resource: "podgroups"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "scheduling.x-k8s.io", Resource: "podgroups", Subresource: "status", Namespace: "ml"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "scheduling.x-k8s.io", Resource: "podgroups", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Group: "scheduling.x-k8s.io", Resource: "podgroups", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: "ml"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "workload-coscheduling"}, true},
			{authorizationv1.ResourceAttributes{Verb: "get", Resource: "configmaps", Namespace: "kube-system", Name: "extension-apiserver-authentication"}, true},
			{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "kube-system"}, false},
			{authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "scheduling.k8s.io", Resource: "workloads", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Group: "scheduling.k8s.io", Resource: "workloads", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "scheduling.k8s.io", Resource: "workloads", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "kube-scheduler"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "ml"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "nodes"}, false},
		}
		for _, tc := range tests {
			attrs := tc.attrs
			review, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{
					User:               sa,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
					ResourceAttributes: &attrs,
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != tc.allow {
				t.Errorf("%s %s/%s %s in %q (name %q): allowed=%v, want %v (%s)", attrs.Verb, attrs.Group, attrs.Resource,
					attrs.Subresource, attrs.Namespace, attrs.Name, review.Status.Allowed, tc.allow, review.Status.Reason)
			}
		}
	})

	t.Run("the scheduler from the chart, as its ServiceAccount, schedules a gang", func(t *testing.T) {
		// PodGroups too: their CRD from the chart, so the scheduler reads
		// them and writes their status with the chart's RBAC.
		installPodGroupCRDFromChart(t, c)
		cm, err := c.client.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "workload-coscheduling", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		asScheduler := c.impersonating(t, sa, "system:serviceaccounts", "system:serviceaccounts:kube-system")
		cfg := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(cm.Data["scheduler-config.yaml"]), &cfg); err != nil {
			t.Fatal(err)
		}
		// As rendered, leader election included; only the kubeconfig is
		// this test's (in a cluster, the pod's ServiceAccount token). The
		// binary runs as its own process, with the Deployment's flags.
		cfg["clientConnection"] = map[string]interface{}{"kubeconfig": asScheduler}
		port := freePort(t)
		startBinary(t, "kube-scheduler", "--config="+c.writeConfig(t, cfg), fmt.Sprintf("--secure-port=%d", port), "--v=2")
		for _, path := range []string{"/healthz", "/readyz"} {
			waitHTTPSOK(t, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), 60*time.Second)
		}

		// Before it schedules anything, the new leader keeps PodGroups'
		// status: it knows it leads from its elector.
		pgNs := c.namespace(t)
		c.createPodGroup(t, pgNs, "job", spv1alpha1.PodGroupSpec{MinMember: 2})
		c.waitPodGroupRow(t, pgNs, "job", "Pending 2 0 0 0")

		ns := c.namespace(t)
		c.addNodes(t, ns, 2, "1")
		c.createWorkload(t, ns, "job", podGroup{name: "workers", minCount: 2})
		c.createGang(t, ns, "job", "workers", "", "w", 2, "1")
		c.waitBound(t, ns, 60*time.Second, "w-0", "w-1")

		c.addNodes(t, pgNs, 2, "1")
		c.waitBound(t, pgNs, 60*time.Second, c.labelled(t, pgNs, "job", "w", 2)...)
		c.waitPodGroupRow(t, pgNs, "job", "Scheduling 2 0 0 0")

		lease, err := c.client.CoordinationV1().Leases("kube-system").Get(context.Background(), "workload-coscheduling", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("no leader election lease: %v", err)
		}
		t.Logf("leader: %s", *lease.Spec.HolderIdentity)
	})
}

// startBinary runs bin/NAME (built by make) until t ends; its output goes to
// the test log if t fails.
func startBinary(t *testing.T, name string, args ...string) {
	t.Helper()
	bin := filepath.Join("..", "..", "bin", name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run the tests with make integration-test, which builds it", bin)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHTTPSOK waits for a 200 from a self-signed HTTPS endpoint, as a
// kubelet probe does.
func waitHTTPSOK(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the scheduler's self-signed serving certificate
	}}
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	t.Fatalf("GET %s: no 200 within %v; last: %s", url, timeout, last)
}

// impersonating writes a kubeconfig that acts as the given user and groups.
func (c *cluster) impersonating(t *testing.T, user string, groups ...string) string {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range kc.AuthInfos {
		auth.Impersonate = user
		auth.ImpersonateGroups = append(groups, "system:authenticated")
	}
	file := filepath.Join(t.TempDir(), "kubeconfig-"+strings.ReplaceAll(user, ":", "-"))
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		t.Fatal(err)
	}
	return file
}
