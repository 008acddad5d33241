// Package jsonschema derives sinkd's field list from a JSON Schema as a
// schema registry serves it (Confluent's JSON Schema serializer), so that a
// user of the registry writes no field list. Records are then read by the
// strict JSON decoder.
package jsonschema

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/sinkd/sinkd/config/conf"
)

// maxDepth bounds the nesting of a schema (and of $ref chains).
const maxDepth = 32

// Fields derives the field list of an object schema, in the order its
// properties are written:
//
//   - "integer" is int64, "number" double, "boolean" bool, "string" string;
//     strings of format date-time, date, time and uuid are timestamp
//     (microseconds), date, time and uuid;
//   - an object with properties is a struct; an object with only
//     additionalProperties (a schema) is a map; an array with items is a
//     list;
//   - a property is required when the object lists it in "required" and its
//     type does not allow null (["string","null"], or a oneOf/anyOf of null
//     and one schema, is that schema, optional);
//   - anything else (no type, other unions, an array without items, an
//     object without properties) is a json column: its JSON text.
//
// Local references (#/definitions/..., #/$defs/...) are followed; recursive
// ones and references to other documents are refused.
func Fields(text string) ([]conf.Field, error) {
	var p fastjson.Parser
	root, err := p.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("json schema: %w", err)
	}
	d := deriver{root: root, open: map[string]bool{}}
	top := d.resolve(root, "", 0)
	if top == nil || !isObject(top) || top.Get("properties") == nil {
		if len(d.errs) == 0 {
			d.errs = append(d.errs, "the top level is not an object schema with properties")
		}
		return nil, fmt.Errorf("json schema: %s", strings.Join(d.errs, "; "))
	}
	fields := d.object(top, "", 0)
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("json schema: %s", strings.Join(d.errs, "; "))
	}
	return fields, nil
}

// EnvelopeFields derives the field list of the row of a Debezium change
// event's JSON Schema (the object schema of its after property, which may
// be a union with null or a reference), without the CDC columns.
func EnvelopeFields(text string) ([]conf.Field, error) {
	var p fastjson.Parser
	root, err := p.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("json schema: %w", err)
	}
	d := deriver{root: root, open: map[string]bool{}}
	var after *fastjson.Value
	if top := d.resolve(root, "", 0); top != nil && isObject(top) {
		if after = d.resolve(top.Get("properties", "after"), "after", 0); after != nil {
			after, _ = d.nullUnion(after, "after", 0)
			after = d.resolve(after, "after", 0)
		}
	}
	if after == nil || !isObject(after) || after.Get("properties") == nil {
		d.errs = append(d.errs, "not a Debezium envelope (no after property holding an object schema with properties)")
		return nil, fmt.Errorf("json schema: %s", strings.Join(d.errs, "; "))
	}
	fields := d.object(after, "", 1)
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("json schema: %s", strings.Join(d.errs, "; "))
	}
	return fields, nil
}

type deriver struct {
	root *fastjson.Value
	open map[string]bool
	errs []string
}

func (d *deriver) fail(path, format string, args ...any) {
	d.errs = append(d.errs, cmpPath(path)+": "+fmt.Sprintf(format, args...))
}

func cmpPath(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

// resolve follows $ref.
func (d *deriver) resolve(v *fastjson.Value, path string, depth int) *fastjson.Value {
	for i := 0; v != nil && v.Get("$ref") != nil; i++ {
		ref := string(v.GetStringBytes("$ref"))
		if i > maxDepth || !strings.HasPrefix(ref, "#/") {
			d.fail(path, "reference %q: only local references (#/...) are followed", ref)
			return nil
		}
		keys := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
		v = d.root.Get(keys...)
		if v == nil {
			d.fail(path, "reference %q names nothing", ref)
			return nil
		}
	}
	return v
}

func isObject(v *fastjson.Value) bool {
	t, _ := types(v)
	return t == "object"
}

// types returns the one non-null type of v and whether null is allowed;
// "" when there is no single type.
func types(v *fastjson.Value) (string, bool) {
	t := v.Get("type")
	if t == nil {
		if v.Get("properties") != nil {
			return "object", false
		}
		return "", false
	}
	if t.Type() == fastjson.TypeString {
		return string(t.GetStringBytes()), false
	}
	if t.Type() != fastjson.TypeArray {
		return "", false
	}
	one, null := "", false
	for _, e := range t.GetArray() {
		s := string(e.GetStringBytes())
		switch {
		case s == "null":
			null = true
		case one == "":
			one = s
		default:
			return "", null
		}
	}
	return one, null
}

// nullUnion unwraps a oneOf/anyOf of null and one schema.
func (d *deriver) nullUnion(v *fastjson.Value, path string, depth int) (*fastjson.Value, bool) {
	for _, k := range []string{"oneOf", "anyOf"} {
		alts := v.GetArray(k)
		if len(alts) != 2 {
			continue
		}
		var other *fastjson.Value
		nulls := 0
		for _, a := range alts {
			a = d.resolve(a, path, depth)
			if a == nil {
				return nil, false
			}
			if t, _ := types(a); t == "null" {
				nulls++
			} else {
				other = a
			}
		}
		if nulls == 1 && other != nil {
			return other, true
		}
	}
	return v, false
}

func (d *deriver) object(v *fastjson.Value, prefix string, depth int) []conf.Field {
	required := map[string]bool{}
	for _, r := range v.GetArray("required") {
		required[string(r.GetStringBytes())] = true
	}
	var fields []conf.Field
	props := v.GetObject("properties")
	if props == nil {
		return nil
	}
	props.Visit(func(key []byte, pv *fastjson.Value) {
		name := string(key)
		f := d.field(pv, prefix+name, depth+1)
		f.Name, f.From = name, name
		f.Required = f.Required && required[name]
		fields = append(fields, f)
	})
	return fields
}

// field derives one value's type; Required is false when null is allowed.
func (d *deriver) field(v *fastjson.Value, path string, depth int) conf.Field {
	f := conf.Field{Required: true, Type: "json"}
	if depth > maxDepth {
		d.fail(path, "nested deeper than %d", maxDepth)
		return f
	}
	ref := string(v.GetStringBytes("$ref"))
	if ref != "" {
		if d.open[ref] {
			d.fail(path, "reference %q contains itself: recursive schemas have no Parquet schema", ref)
			return f
		}
		d.open[ref] = true
		defer delete(d.open, ref)
	}
	if v = d.resolve(v, path, depth); v == nil {
		return f
	}
	var nullable bool
	v, nullable = d.nullUnion(v, path, depth)
	if v == nil {
		return f
	}
	if inner := string(v.GetStringBytes("$ref")); inner != "" && inner != ref {
		g := d.field(v, path, depth+1)
		g.Required = g.Required && !nullable
		return g
	}
	t, null := types(v)
	f.Required = !nullable && !null
	switch t {
	case "integer":
		f.Type = "int64"
	case "number":
		f.Type = "double"
	case "boolean":
		f.Type = "bool"
	case "string":
		f.Type = "string"
		switch string(v.GetStringBytes("format")) {
		case "date-time":
			f.Type, f.Unit = "timestamp", "micros"
		case "date":
			f.Type = "date"
		case "time":
			f.Type = "time"
		case "uuid":
			f.Type = "uuid"
		}
	case "object":
		if v.Get("properties") != nil {
			if fields := d.object(v, path+".", depth); len(fields) > 0 {
				f.Type, f.Fields = "struct", fields
			}
		} else if ap := v.Get("additionalProperties"); ap != nil && ap.Type() == fastjson.TypeObject {
			values := d.field(ap, path, depth+1)
			f.Type, f.Values = "map", &values
		}
	case "array":
		if items := v.Get("items"); items != nil && items.Type() == fastjson.TypeObject {
			e := d.field(items, path, depth+1)
			f.Type, f.Items = "list", &e
		}
	}
	return f
}
