package writers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
)

// TemplateFailure dead-letters a record one of a route's templates cannot
// render (a field it needs is missing, say); what names the template.
func TemplateFailure(ctx context.Context, dl DeadLetter, rec *record.Record, err error, routeName, what string) error {
	class := "other"
	var be *buckets.Error
	if errors.As(err, &be) {
		class = be.Class
	}
	return dl(ctx, rec, string(dlq.StageBucket), class, err.Error(), map[string]string{"route": routeName, "template": what})
}

// CompileRaw compiles OpenSearch index and id templates the way the pipeline does.
func CompileRaw(s *schema.Schema) func(string) error {
	return func(t string) error {
		_, err := buckets.CompileRaw(t, s, conf.EventTime{Source: "broker"}, "UTC")
		return err
	}
}

// TemplateProblems turns the failure of a template into every problem it
// has. The template compiler stops at its first problem; here each
// placeholder is compiled on its own, so that one run of `sinkd validate`
// lists them all, and an unknown field name gets the closest schema field as
// a suggestion. When no placeholder fails alone (an unbalanced brace, say),
// the compiler's own error is the one problem.
func TemplateProblems(tmpl string, s *schema.Schema, compile func(string) error, whole error) []string {
	var out []string
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '{' {
			continue
		}
		end := strings.IndexAny(tmpl[i+1:], "{}")
		if end < 0 || tmpl[i+1+end] != '}' {
			break // the structure is broken: the compiler's error says where
		}
		body := tmpl[i+1 : i+1+end]
		name, _, _ := strings.Cut(body, ":")
		switch _, known := s.Lookup(name); {
		case name != "" && !strings.HasPrefix(name, "@") && !known:
			msg := fmt.Sprintf("template %q: at offset %d: unknown field %q", tmpl, i, name)
			if near := closestField(name, s); near != "" {
				msg += fmt.Sprintf(", did you mean %q?", near)
			}
			out = append(out, msg)
		default:
			if err := compile("{" + body + "}"); err != nil {
				_, why, ok := strings.Cut(err.Error(), ": at offset 0: ")
				if !ok {
					why = err.Error()
				}
				out = append(out, fmt.Sprintf("template %q: at offset %d: %s", tmpl, i, why))
			}
		}
		i += end + 1
	}
	if len(out) == 0 {
		return []string{whole.Error()}
	}
	return out
}

// closestField is the schema field within a third of the name's length in
// edits (at least 2): most unknown names are typos.
func closestField(name string, s *schema.Schema) string {
	best, bestDist := "", max(2, len(name)/3)+1
	for _, f := range s.Fields() {
		if d := conf.EditDistance(strings.ToLower(name), strings.ToLower(f.Name)); d < bestDist {
			best, bestDist = f.Name, d
		}
	}
	return best
}
