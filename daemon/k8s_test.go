package daemon

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"gopkg.in/yaml.v3"
)

// k8sDocs decodes every document of a manifest file.
func k8sDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s document %d: %v", name, len(docs)+1, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestKubernetesManifestsApply checks what `kubectl apply` and the operator
// need from the manifests as they are: every object is complete, every
// reference (ServiceAccount, ConfigMap) resolves, the PodMonitor selects the
// sidecar pods and names a port they have, the PrometheusRule holds exactly
// the rules of deploy/prometheus, and no rule depends on the job's name.
func TestKubernetesManifestsApply(t *testing.T) {
	objects := map[string]map[string]any{}
	for _, f := range []string{"sidecar.yaml", "prometheus-operator.yaml"} {
		for _, d := range k8sDocs(t, f) {
			kind, _ := d["kind"].(string)
			name, _ := dig(d, "metadata", "name").(string)
			if d["apiVersion"] == nil || kind == "" || name == "" {
				t.Errorf("%s: an object without apiVersion, kind or metadata.name: %v", f, d)
			}
			objects[kind+"/"+name] = d
		}
	}
	pod := dig(objects["Deployment/taxi-dispatch"], "spec", "template")
	if pod == nil {
		t.Fatal("no Deployment taxi-dispatch")
	}
	if sa, _ := dig(pod, "spec", "serviceAccountName").(string); objects["ServiceAccount/"+sa] == nil {
		t.Errorf("the pod runs as ServiceAccount %q, which the manifests do not define", sa)
	}
	for _, v := range dig(pod, "spec", "volumes").([]any) {
		if cm, _ := dig(v, "configMap", "name").(string); cm != "" && objects["ConfigMap/"+cm] == nil {
			t.Errorf("volume from ConfigMap %q, which is not defined", cm)
		}
	}
	ports := map[string]bool{}
	for _, list := range []string{"initContainers", "containers"} {
		cs, _ := dig(pod, "spec", list).([]any)
		for _, c := range cs {
			ps, _ := dig(c, "ports").([]any)
			for _, p := range ps {
				ports[dig(p, "name").(string)] = true
			}
			efs, _ := dig(c, "envFrom").([]any)
			for _, ef := range efs {
				if cm, _ := dig(ef, "configMapRef", "name").(string); cm != "" && objects["ConfigMap/"+cm] == nil {
					t.Errorf("envFrom ConfigMap %q, which is not defined", cm)
				}
			}
		}
	}

	pm := objects["PodMonitor/sinkd"]
	if pm == nil {
		t.Fatal("no PodMonitor sinkd")
	}
	labels, _ := dig(pod, "metadata", "labels").(map[string]any)
	for k, v := range dig(pm, "spec", "selector", "matchLabels").(map[string]any) {
		if labels[k] != v {
			t.Errorf("the PodMonitor selects %s=%v, which the sidecar pods do not carry (%v)", k, v, labels)
		}
	}
	if port, _ := dig(pm, "spec", "podMetricsEndpoints", 0, "port").(string); !ports[port] {
		t.Errorf("the PodMonitor scrapes port %q, which no container names", port)
	}

	raw, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "sinkd-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	if got := dig(objects["PrometheusRule/sinkd"], "spec", "groups"); !reflect.DeepEqual(got, rules["groups"]) {
		t.Error("the PrometheusRule's groups differ from deploy/prometheus/sinkd-rules.yaml: copy the file's groups into it")
	}
	if m := regexp.MustCompile(`job\s*=\s*"[^"]*"`).Find(raw); m != nil {
		t.Errorf("a rule selects one job name (%s): Prometheus Operator jobs are NAMESPACE/NAME", m)
	}
}
