package schema

import (
	"reflect"

	"github.com/parquet-go/parquet-go"
)

// ordered is a Parquet group whose fields keep the order they were declared in.
// parquet.Group sorts its fields by name, which puts trip_id 17th of 19 columns
// in SELECT *: readers show columns in the file's schema order, and users
// expect the order they wrote (or their registry schema has).
type ordered struct {
	parquet.Group // Type, GoType and the other group methods; never read for fields
	fields        []parquet.Field
}

func newOrdered(fields []parquet.Field) *ordered {
	g := make(parquet.Group, len(fields))
	for _, f := range fields {
		g[f.Name()] = f
	}
	return &ordered{Group: g, fields: fields}
}

func (g *ordered) Fields() []parquet.Field { return g.fields }

// namedNode is a field of an ordered group.
type namedNode struct {
	parquet.Node
	name string
}

func (f namedNode) Name() string { return f.name }

// Value is parquet-go's reflection path, which sinkd never takes: rows are
// built by the decoder.
func (f namedNode) Value(base reflect.Value) reflect.Value { return reflect.Value{} }
