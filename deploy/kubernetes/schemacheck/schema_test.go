// Package schemacheck validates the Kubernetes manifests of deploy/kubernetes
// against the API's own types: k8s.io/api for the built-in kinds and the
// Prometheus Operator's for PodMonitor and PrometheusRule, the Go types the
// published OpenAPI schemas are generated from. Every document is decoded
// strictly (an unknown or misspelt field, a wrong type, a malformed quantity
// or port is an error), as `kubectl apply --validate=strict` would reject it.
//
// It is a module of its own so that the Kubernetes libraries stay out of
// sinkd's module graph. kubeconform installs from the Go module proxy, but
// validates against JSON schemas it downloads from GitHub at run time, which
// this project's machines and CI cannot reach.
package schemacheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// kinds are the kinds the manifests may use; one that is not here fails the
// test until its type is added.
var kinds = map[string]func() any{
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// validate checks every document of a manifest file and returns its problems.
func validate(name string, raw []byte) []string {
	var problems []string
	for i, doc := range docSeparator.Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		where := fmt.Sprintf("%s document %d", name, i+1)
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no schema for %s %s", where, tm.APIVersion, tm.Kind))
			continue
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			problems = append(problems, fmt.Sprintf("%s (%s): %v", where, tm.Kind, err))
			continue
		}
		problems = append(problems, checkObject(where, obj)...)
	}
	return problems
}

// checkObject adds what the API server checks beyond the types and a
// manifest most often gets wrong: names, labels, and a Deployment's selector
// matching its pod template (apps/v1 refuses one that does not).
func checkObject(where string, obj any) []string {
	var problems []string
	meta, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return []string{where + ": no metadata"}
	}
	m := meta.GetObjectMeta()
	if m.GetName() == "" {
		problems = append(problems, where+": metadata.name is empty")
	}
	for _, msg := range validation.IsDNS1123Subdomain(m.GetName()) {
		problems = append(problems, fmt.Sprintf("%s: metadata.name %q: %s", where, m.GetName(), msg))
	}
	for k, v := range m.GetLabels() {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			problems = append(problems, fmt.Sprintf("%s: label %s=%s: %s", where, k, v, msg))
		}
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		switch {
		case d.Spec.Selector == nil:
			problems = append(problems, where+": spec.selector is required")
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: spec.selector: %v", where, err))
		case !sel.Matches(labelSet(d.Spec.Template.Labels)):
			problems = append(problems, fmt.Sprintf("%s: spec.selector %s does not match the pod template's labels %v", where, sel, d.Spec.Template.Labels))
		}
		for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
			if c.Name == "" || c.Image == "" {
				problems = append(problems, fmt.Sprintf("%s: a container without name or image", where))
			}
		}
	}
	return problems
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestManifestsMatchTheAPI validates every manifest shipped in
// deploy/kubernetes.
func TestManifestsMatchTheAPI(t *testing.T) {
	files, err := filepath.Glob("../*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range validate(filepath.Base(f), raw) {
			t.Error(p)
		}
	}
}

// TestValidatorRejects: each broken copy of the sidecar manifest is refused,
// so the check above can fail.
func TestValidatorRejects(t *testing.T) {
	raw, err := os.ReadFile("../sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, old, new, want string
	}{
		{"misspelt field", "serviceAccountName:", "serviceAcountName:", `unknown field "serviceAcountName"`},
		{"wrong type", "replicas: 2", "replicas: two", "replicas"},
		{"selector not matching the pods", "matchLabels: {app.kubernetes.io/name: taxi-dispatch}", "matchLabels: {app.kubernetes.io/name: taxi}", "does not match the pod template's labels"},
		{"bad quantity", "sizeLimit: ", "sizeLimit: lots", "quantities must match"},
		{"unknown kind", "kind: ServiceAccount", "kind: ServiceAcount", "no schema for v1 ServiceAcount"},
		{"bad name", "name: taxi-dispatch", "name: Taxi_Dispatch", `metadata.name "Taxi_Dispatch"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(raw, []byte(tt.old)) {
				t.Fatalf("sidecar.yaml no longer contains %q", tt.old)
			}
			broken := bytes.Replace(raw, []byte(tt.old), []byte(tt.new), 1)
			problems := strings.Join(validate("sidecar.yaml", broken), "\n")
			if !strings.Contains(problems, tt.want) {
				t.Errorf("want a problem with %q, got:\n%s", tt.want, problems)
			}
		})
	}
}
