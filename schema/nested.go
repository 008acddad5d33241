package schema

import (
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Nested values are decoded in the same single pass as the top level: each
// leaf column collects its values, with their repetition and definition
// levels (Dremel encoding, as Parquet stores them), and Decode concatenates
// the columns in order into the row. A column under a list or map collects
// any number of values in Decoder.cols; any other takes exactly one, in
// Decoder.vals, without the cost of appending. A missing or null
// struct, list or map gives every leaf column under it one null value at the
// level it stopped at; an empty list or map gives one null value at the
// level of the list or map itself.

// frame is a nested field being read: a struct, a list at element idx, or a
// map at the value of key.
type frame struct {
	f   *Field
	idx int
	key []byte
}

// value reads the value at i for f, a field under a struct, list or map or a
// top-level nested field, inside depth open arrays and objects; rep is the
// repetition level of the first value it gives each column.
func (d *Decoder) value(f *Field, b []byte, i, depth, rep int) (int, string) {
	if d.err != nil {
		return skipValue(b, i, depth)
	}
	if i >= len(b) {
		return i, wantValue
	}
	c := b[i]
	if c == 'n' {
		end, want := skipLiteral(b, i, "null")
		if want != "" {
			return end, want
		}
		if f.Required {
			d.err = &Error{Class: ClassNullRequired, Field: d.where(f), Expected: expected(f), Got: "null"}
			return end, ""
		}
		d.null(f, rep)
		return end, ""
	}
	switch f.Kind {
	case Struct:
		if c == '{' {
			return d.object(f, b, i, depth+1, rep)
		}
	case List:
		if c == '[' {
			return d.array(f, b, i, depth+1, rep)
		}
	case Map:
		if c == '{' {
			return d.mapObject(f, b, i, depth+1, rep)
		}
	default:
		return d.scalar(f, b, i, depth, rep)
	}
	end, want := skipValue(b, i, depth)
	if want != "" {
		return end, want
	}
	d.err = &Error{Class: ClassTypeMismatch, Field: d.where(f), Expected: expected(f), Got: describe(b[i:end])}
	return end, ""
}

// resetNested clears what one nested payload leaves in the decoder (the
// error, the string buffer, the stack, the repeated columns): the start of
// every Avro and Protobuf Decode.
func (d *Decoder) resetNested() {
	d.err = nil
	d.strs = d.strs[:0]
	d.stack = d.stack[:0]
	for _, c := range d.schema.repeated {
		d.cols[c] = d.cols[c][:0]
	}
}

// appendRuns appends the values of every column, in column order: a run of
// single-valued columns in one copy, a repeated column's values in another.
// It assembles the row of every nested decoder (JSON, Avro, Protobuf).
func (d *Decoder) appendRuns(row parquet.Row) parquet.Row {
	for _, r := range d.schema.runs {
		if r.repeated {
			row = append(row, d.cols[r.from]...)
		} else {
			row = append(row, d.vals[r.from:r.to]...)
		}
	}
	return row
}

// put stores v with its levels as the next value of column c: appended to
// the column's values when it is repeated (under a list or map), else its one
// value. The levels are set in place with parquet-go's setters rather than
// by v.Level: Level is not inlined, and going through its by-value result
// made put about two thirds of a taxi-size Protobuf decode.
func (d *Decoder) put(c int, repeated bool, v parquet.Value, rep, def int) {
	var dst *parquet.Value
	if repeated {
		col := append(d.cols[c], v)
		d.cols[c] = col
		dst = &col[len(col)-1]
	} else {
		dst = &d.vals[c]
		*dst = v
	}
	dst.SetRepetitionLevel(rep)
	dst.SetDefinitionLevel(def)
	dst.SetColumnIndex(c)
}

// null gives every leaf column of f, which is null or missing, a null value.
func (d *Decoder) null(f *Field, rep int) {
	def := f.def
	if !f.Required {
		def--
	}
	d.nulls(f.Column, f.end, rep, def)
}

func (d *Decoder) nulls(from, to, rep, def int) {
	for c := from; c < to; c++ {
		d.put(c, d.schema.isRepeated[c], parquet.NullValue(), rep, def)
	}
}

func (d *Decoder) scalar(f *Field, b []byte, i, depth, rep int) (int, string) {
	start := i
	var end int
	var escaped bool
	var want string
	if b[i] == '"' {
		end, escaped, want = scanString(b, i+1)
		end++
	} else {
		end, want = skipValue(b, i, depth)
	}
	if want != "" {
		return end, want
	}
	// Converted straight into its place, as the top level does: no copy.
	// A failed record leaves a value behind in a list's column, which the
	// next record's reset drops.
	var dst *parquet.Value
	if f.inList {
		col := append(d.cols[f.Column], parquet.Value{})
		d.cols[f.Column] = col
		dst = &col[len(col)-1]
	} else {
		dst = &d.vals[f.Column]
	}
	if err := d.convert(f, b[start:end], escaped, dst); err != nil {
		err.Field = d.where(f)
		d.err = err
		return end, ""
	}
	dst.SetRepetitionLevel(rep)
	dst.SetDefinitionLevel(f.def)
	dst.SetColumnIndex(f.Column)
	return end, ""
}

// object reads a struct's object, whose '{' is at i and which is the
// depth-th open array or object.
func (d *Decoder) object(f *Field, b []byte, i, depth, rep int) (int, string) {
	if depth > MaxDepth {
		return i, wantShallower
	}
	seen := d.fseen[f.seenAt : f.seenAt+len(f.Fields)]
	clear(seen)
	d.stack = append(d.stack, frame{f: f, idx: -1})
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for n := 0; ; n++ {
			if i >= len(b) || b[i] != '"' {
				return i, wantKey
			}
			keyEnd, escaped, want := scanString(b, i+1)
			if want != "" {
				return keyEnd, want
			}
			key := b[i+1 : keyEnd]
			i = skipSpace(b, keyEnd+1)
			if i >= len(b) || b[i] != ':' {
				return i, wantColon
			}
			i = skipSpace(b, i+1)
			idx := -1
			if d.err == nil {
				if escaped {
					d.text = appendUnescaped(d.text[:0], key)
					key = d.text
				}
				// Producers mostly write keys in the declared order: a
				// byte comparison is cheaper than hashing.
				if n < len(f.Fields) && string(key) == f.Fields[n].From {
					idx = n
				} else if j, ok := f.byKey[string(key)]; ok {
					idx = j
				}
			}
			switch {
			case idx < 0:
				i, want = skipValue(b, i, depth)
			case seen[idx]:
				c := &f.Fields[idx]
				d.err = &Error{Class: ClassDuplicateKey, Field: d.where(c), Expected: "key " + strconv.Quote(c.From) + " once", Got: "it twice"}
				i, want = skipValue(b, i, depth)
			default:
				seen[idx] = true
				if c := &f.Fields[idx]; !c.Kind.nested() && i < len(b) && b[i] != 'n' {
					i, want = d.scalar(c, b, i, depth, rep) // the common case, one call less
				} else {
					i, want = d.value(c, b, i, depth, rep)
				}
			}
			if want != "" {
				return i, want
			}
			// Inline rather than nextMember, as in decodeObject.
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return i, wantObjectNext
		}
	}
	if d.err == nil {
		for j := range f.Fields {
			if seen[j] {
				continue
			}
			c := &f.Fields[j]
			if c.Required {
				d.err = &Error{Class: ClassMissingRequired, Field: d.where(c), Expected: expected(c), Got: "no key " + strconv.Quote(c.From)}
				break
			}
			d.null(c, rep)
		}
	}
	d.stack = d.stack[:len(d.stack)-1]
	return i, ""
}

// array reads a list's array, whose '[' is at i.
func (d *Decoder) array(f *Field, b []byte, i, depth, rep int) (int, string) {
	if depth > MaxDepth {
		return i, wantShallower
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		d.nulls(f.Column, f.end, rep, f.def)
		return i + 1, ""
	}
	e := f.Elem
	top := len(d.stack)
	d.stack = append(d.stack, frame{f: f})
	for n := 0; ; n++ {
		r := rep
		if n > 0 {
			r = e.rep
		}
		d.stack[top].idx = n
		var want string
		if i, want = d.value(e, b, i, depth, r); want != "" {
			return i, want
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			break
		}
		return i, wantArrayNext
	}
	d.stack = d.stack[:top]
	return i + 1, ""
}

// mapObject reads a map's object, whose '{' is at i. Keys are kept as given,
// duplicates included: which one a reader keeps is the reader's choice.
func (d *Decoder) mapObject(f *Field, b []byte, i, depth, rep int) (int, string) {
	if depth > MaxDepth {
		return i, wantShallower
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		d.nulls(f.Column, f.end, rep, f.def)
		return i + 1, ""
	}
	e := f.Elem
	top := len(d.stack)
	d.stack = append(d.stack, frame{f: f, idx: -1})
	for n := 0; ; n++ {
		if i >= len(b) || b[i] != '"' {
			return i, wantKey
		}
		keyEnd, escaped, want := scanString(b, i+1)
		if want != "" {
			return keyEnd, want
		}
		key := b[i+1 : keyEnd]
		i = skipSpace(b, keyEnd+1)
		if i >= len(b) || b[i] != ':' {
			return i, wantColon
		}
		i = skipSpace(b, i+1)
		r := rep
		if n > 0 {
			r = e.rep
		}
		if d.err == nil {
			start := len(d.strs)
			if escaped {
				d.strs = appendUnescaped(d.strs, key)
			} else {
				d.strs = append(d.strs, key...)
			}
			d.put(f.Column, true, parquet.ByteArrayValue(d.strs[start:]), r, f.def+1)
			d.stack[top].key = key
		}
		if i, want = d.value(e, b, i, depth, r); want != "" {
			return i, want
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			break
		}
		return i, wantObjectNext
	}
	d.stack = d.stack[:top]
	return i + 1, ""
}

// whereStack renders the path of the innermost field on the stack.
func (d *Decoder) whereStack() string {
	if len(d.stack) == 0 {
		return ""
	}
	top := d.stack[len(d.stack)-1].f
	d.stack = d.stack[:len(d.stack)-1]
	s := d.where(top)
	return s
}

// where renders the path of f, read inside the fields on the stack, with list
// indexes and map keys: payment.card.last4, stops[2].zone, tags["a"].
func (d *Decoder) where(f *Field) string {
	var b strings.Builder
	var parent *Field
	for _, fr := range d.stack {
		if parent == nil || parent.Elem != fr.f {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(fr.f.Name)
		}
		switch {
		case fr.key != nil:
			b.WriteByte('[')
			b.WriteString(quoteSnippet(fr.key))
			b.WriteByte(']')
		case fr.idx >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(fr.idx))
			b.WriteByte(']')
		}
		parent = fr.f
	}
	if parent == nil || parent.Elem != f {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(f.Name)
	}
	return b.String()
}
