package schema

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sinkd/sinkd/config/conf"
)

// ClassIncompatibleSchema is a record written with a schema whose fields
// cannot be merged into the file schema (a changed type, say).
const ClassIncompatibleSchema = "incompatible_schema"

// Merge merges the fields a writer's schema derives (writer) into the file
// schema's fields (file), for schema evolution. The additive changes are
// merged:
//
//   - a field the file lacks is added after the others of its struct,
//     optional (rows written before it are null there);
//   - int32 widens to int64, float to double (the decoders widen values of
//     the narrower type);
//   - a field that is required on one side and optional on the other, or
//     absent from the writer, is optional;
//   - a new enum symbol changes nothing: enums are strings.
//
// Anything else (a changed type, unit, precision or scale) is incompatible:
// the error names the field. Merge never reorders or drops a file field, so
// the merged schema reads every row of the file schema. The result shares
// nothing with its arguments.
func Merge(file, writer []conf.Field) ([]conf.Field, error) {
	var errs []string
	out := mergeFields(file, writer, "", &errs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

func mergeFields(file, writer []conf.Field, prefix string, errs *[]string) []conf.Field {
	out := make([]conf.Field, 0, len(file)+len(writer))
	used := make([]bool, len(writer))
	for _, f := range file {
		i := slices.IndexFunc(writer, func(w conf.Field) bool { return w.Name == f.Name })
		if i < 0 {
			f = cloneField(f)
			f.Required = false
			out = append(out, f)
			continue
		}
		used[i] = true
		out = append(out, mergeField(f, writer[i], prefix+f.Name, errs))
	}
	for i, w := range writer {
		if !used[i] {
			w = cloneField(w)
			w.Required = false
			out = append(out, w)
		}
	}
	return out
}

func mergeField(f, w conf.Field, path string, errs *[]string) conf.Field {
	out := cloneField(f)
	out.Required = f.Required && w.Required
	switch {
	case f.Type == w.Type:
	case f.Type == "int64" && w.Type == "int32", f.Type == "double" && w.Type == "float":
	case f.Type == "int32" && w.Type == "int64", f.Type == "float" && w.Type == "double":
		out.Type = w.Type
	default:
		*errs = append(*errs, fmt.Sprintf("%s: %s in the file schema, %s in the writer's", path, describeType(f), describeType(w)))
		return out
	}
	switch f.Type {
	case "timestamp", "time":
		if f.Unit != w.Unit {
			*errs = append(*errs, fmt.Sprintf("%s: %s unit %s in the file schema, %s in the writer's", path, f.Type, f.Unit, w.Unit))
		}
	case "decimal":
		if f.Precision != w.Precision || f.Scale != w.Scale {
			*errs = append(*errs, fmt.Sprintf("%s: %s in the file schema, %s in the writer's", path, describeType(f), describeType(w)))
		}
	case "struct":
		out.Fields = mergeFields(f.Fields, w.Fields, path+".", errs)
	case "list":
		items := mergeField(*f.Items, *w.Items, path+"[]", errs)
		out.Items = &items
	case "map":
		values := mergeField(*f.Values, *w.Values, path+"{}", errs)
		out.Values = &values
	}
	return out
}

func describeType(f conf.Field) string {
	if f.Type == "decimal" {
		return fmt.Sprintf("decimal(%d,%d)", f.Precision, f.Scale)
	}
	return f.Type
}

func cloneField(f conf.Field) conf.Field {
	if f.Fields != nil {
		fields := make([]conf.Field, len(f.Fields))
		for i := range f.Fields {
			fields[i] = cloneField(f.Fields[i])
		}
		f.Fields = fields
	}
	if f.Items != nil {
		items := cloneField(*f.Items)
		f.Items = &items
	}
	if f.Values != nil {
		values := cloneField(*f.Values)
		f.Values = &values
	}
	return f
}
