package parquetsink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// A file is assembled from row groups, not written by one parquet-go writer
// from start to end. A live parquet-go writer keeps buffers for every column
// (about 18 KiB each) for as long as it lives, so one writer per open bucket
// costs hundreds of MiB with thousands of buckets. Instead a small pool of
// encoders is lent to the files being written most: an encoder builds one row
// group as a complete Parquet file, directly into the borrowing file's buffer,
// and spliceRowGroup cuts that down to the row group's bytes with its offsets
// moved to where they now sit. The file's footer is written by the file itself
// when it rolls (footer).

var magic = []byte("PAR1")

// footerTemplate is the file metadata every file of one writer shares. The
// schema elements and column orders come from the first row group encoded.
type footerTemplate struct {
	createdBy    string
	paths        [][]string // of the leaf columns, in column chunk order
	encoded      bool
	version      int32
	schema       []format.SchemaElement
	columnOrders []format.ColumnOrder
	keyValues    []format.KeyValue
}

// rowGroup is a finished row group of a file: its pages are in the file's
// bytes; its metadata and page index wait for the footer, because readers
// expect every column index, then every offset index, right before it.
type rowGroup struct {
	meta               []byte // format.RowGroup; index offsets relative to colIndex and offIndex
	colIndex, offIndex []byte
}

func (g *rowGroup) size() int64 { return int64(len(g.meta)+len(g.colIndex)+len(g.offIndex)) + 80 }

// spliceRowGroup turns the complete one-row-group Parquet file at b[start:]
// into a row group of the file b belongs to: it drops the leading magic and
// cuts the page index and footer off for later, with every page offset moved
// to where the page now sits. base is the file offset of b[0]. md is the
// file metadata the encoder wrote (its File().Metadata() after Close: the
// footer need not be decoded again). It returns the new end of b, the row
// group for the footer and, in last, its metadata with the offsets moved;
// keep reports whether g.meta must hold it encoded (the file may get more
// row groups), which costs an encoding that a file's last row group can skip.
func spliceRowGroup(b []byte, start int, base int64, tmpl *footerTemplate, md *format.FileMetaData, keep bool) ([]byte, rowGroup, *format.RowGroup, error) {
	var g rowGroup
	one := b[start:]
	n := len(one)
	if n < 12 || string(one[:4]) != "PAR1" || string(one[n-4:]) != "PAR1" {
		return nil, g, nil, errors.New("encoder output is not a Parquet file")
	}
	footerLen := int(binary.LittleEndian.Uint32(one[n-8 : n-4]))
	if footerLen > n-12 {
		return nil, g, nil, errors.New("encoder output has a footer longer than the file")
	}
	if md == nil {
		md = new(format.FileMetaData)
		if err := thrift.Unmarshal(new(thrift.CompactProtocol), one[n-8-footerLen:n-8], md); err != nil {
			return nil, g, nil, fmt.Errorf("reading the encoder's footer: %w", err)
		}
	}
	if len(md.RowGroups) != 1 {
		return nil, g, nil, fmt.Errorf("encoder wrote %d row groups, want 1", len(md.RowGroups))
	}
	if !tmpl.encoded {
		tmpl.encoded, tmpl.version, tmpl.schema, tmpl.columnOrders, tmpl.keyValues = true,
			md.Version, slices.Clone(md.Schema), slices.Clone(md.ColumnOrders), slices.Clone(md.KeyValueMetadata)
	}
	// A copy: md belongs to the encoder, which reuses it.
	rg := md.RowGroups[0]
	rg.Columns = slices.Clone(rg.Columns)
	if len(rg.Columns) != len(tmpl.paths) {
		return nil, g, nil, fmt.Errorf("encoder wrote %d column chunks, the schema has %d columns", len(rg.Columns), len(tmpl.paths))
	}

	// The column chunks sit back to back after the magic; the page index
	// follows them.
	chunksEnd := int64(4)
	for i := range rg.Columns {
		m := &rg.Columns[i].MetaData
		first := m.DataPageOffset
		if m.DictionaryPageOffset > 0 {
			first = m.DictionaryPageOffset
		}
		if first != chunksEnd {
			return nil, g, nil, fmt.Errorf("column chunk %d starts at %d, want %d", i, first, chunksEnd)
		}
		if m.BloomFilterOffset != 0 {
			return nil, g, nil, errors.New("bloom filters are not supported")
		}
		chunksEnd += m.TotalCompressedSize
	}
	if chunksEnd > int64(n-8-footerLen) {
		return nil, g, nil, errors.New("column chunks overrun the footer")
	}
	index := one[chunksEnd : n-8-footerLen]
	delta := base + int64(start) - 4 // chunk bytes move from offset 4 to base+start
	rg.FileOffset += delta
	var colIndex, offIndex int
	for i := range rg.Columns {
		c := &rg.Columns[i]
		colIndex += int(c.ColumnIndexLength)
		offIndex += int(c.OffsetIndexLength) + 16 // shifted offsets may grow a varint
	}
	// Held until the file rolls, by thousands of files: exact sizes.
	g.colIndex = make([]byte, 0, colIndex)
	offBuf := make([]byte, 0, offIndex)
	for i := range rg.Columns {
		c := &rg.Columns[i]
		// The footer puts the column's path back from the schema: parquet-go
		// v0.32 loses path_in_schema in the row groups a writer builds after
		// a Reset (parquet-go/parquet-go#602), and the path need not be
		// held once per row group.
		c.MetaData.PathInSchema = nil
		c.MetaData.DataPageOffset += delta
		if c.MetaData.DictionaryPageOffset > 0 {
			c.MetaData.DictionaryPageOffset += delta
		}
		if c.MetaData.IndexPageOffset > 0 {
			c.MetaData.IndexPageOffset += delta
		}
		if c.FileOffset > 0 {
			c.FileOffset += delta
		}
		if c.ColumnIndexLength > 0 {
			from := c.ColumnIndexOffset - chunksEnd
			if from < 0 || from+int64(c.ColumnIndexLength) > int64(len(index)) {
				return nil, g, nil, fmt.Errorf("column index of column %d is outside the page index", i)
			}
			c.ColumnIndexOffset = int64(len(g.colIndex))
			// Column indexes hold no offsets: their bytes move as they are.
			g.colIndex = append(g.colIndex, index[from:from+int64(c.ColumnIndexLength)]...)
		}
		if c.OffsetIndexLength > 0 {
			from := c.OffsetIndexOffset - chunksEnd
			if from < 0 || from+int64(c.OffsetIndexLength) > int64(len(index)) {
				return nil, g, nil, fmt.Errorf("offset index of column %d is outside the page index", i)
			}
			at := len(offBuf)
			var err error
			if offBuf, err = shiftOffsetIndex(offBuf, index[from:from+int64(c.OffsetIndexLength)], delta); err != nil {
				return nil, g, nil, fmt.Errorf("offset index of column %d: %w", i, err)
			}
			c.OffsetIndexOffset = int64(at)
			c.OffsetIndexLength = int32(len(offBuf) - at)
		}
	}
	g.offIndex = bytes.Clone(offBuf)
	if keep {
		meta, err := thrift.Marshal(new(thrift.CompactProtocol), &rg)
		if err != nil {
			return nil, g, nil, err
		}
		g.meta = bytes.Clone(meta)
	}
	copy(one, one[4:chunksEnd])
	return b[:start+int(chunksEnd)-4], g, &rg, nil
}

// shiftOffsetIndex appends to dst the compact-protocol OffsetIndex src with
// every page offset moved by delta. It reads the shape parquet-go writes
// (page_locations first, each location's three fields in order) by hand, a
// tenth of what decoding and encoding it by reflection costs, and takes that
// slower path for anything else.
func shiftOffsetIndex(dst, src []byte, delta int64) ([]byte, error) {
	if out, ok := shiftOffsetIndexFast(dst, src, delta); ok {
		return out, nil
	}
	var oi format.OffsetIndex
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), src, &oi); err != nil {
		return dst, err
	}
	for j := range oi.PageLocations {
		oi.PageLocations[j].Offset += delta
	}
	enc, err := thrift.Marshal(new(thrift.CompactProtocol), &oi)
	if err != nil {
		return dst, err
	}
	return append(dst, enc...), nil
}

// Compact protocol: a field header is delta<<4 | type; these are the headers
// of fields 1, 2, 3 following each other.
const (
	compactI32    = 5
	compactI64    = 6
	compactList   = 9
	compactStruct = 12
)

func shiftOffsetIndexFast(dst, src []byte, delta int64) ([]byte, bool) {
	in := src
	// Field 1, a list of structs.
	if len(in) < 2 || in[0] != 1<<4|compactList {
		return dst, false
	}
	in = in[1:]
	size := int(in[0] >> 4)
	if in[0]&0x0f != compactStruct {
		return dst, false
	}
	in = in[1:]
	if size == 15 {
		v, n := binary.Uvarint(in)
		if n <= 0 || v > uint64(len(in)) {
			return dst, false
		}
		size, in = int(v), in[n:]
	}
	start := len(dst)
	dst = append(dst, 1<<4|compactList)
	if size < 15 {
		dst = append(dst, byte(size<<4|compactStruct))
	} else {
		dst = append(dst, 15<<4|compactStruct)
		dst = binary.AppendUvarint(dst, uint64(size))
	}
	for range size {
		// offset: i64, compressed_page_size: i32, first_row_index: i64, stop.
		if len(in) < 1 || in[0] != 1<<4|compactI64 {
			return dst[:start], false
		}
		offset, n := binary.Varint(in[1:])
		if n <= 0 {
			return dst[:start], false
		}
		in = in[1+n:]
		dst = append(dst, 1<<4|compactI64)
		dst = binary.AppendVarint(dst, offset+delta)
		// The other two fields and the stop byte are copied as they are.
		if len(in) < 1 || in[0] != 1<<4|compactI32 {
			return dst[:start], false
		}
		_, n1 := binary.Varint(in[1:])
		if n1 <= 0 || len(in) < 2+n1 || in[1+n1] != 1<<4|compactI64 {
			return dst[:start], false
		}
		_, n2 := binary.Varint(in[2+n1:])
		if n2 <= 0 || len(in) < 3+n1+n2 || in[2+n1+n2] != 0 {
			return dst[:start], false
		}
		dst = append(dst, in[:3+n1+n2]...)
		in = in[3+n1+n2:]
	}
	// What follows page_locations (unencoded_byte_array_data_bytes, whose
	// field header is relative to field 1) holds no offsets: copied as is,
	// stop byte included.
	if len(in) == 0 {
		return dst[:start], false
	}
	return append(dst, in...), true
}

// footer returns what ends a file made of the given row groups once their
// pages are written, starting at file offset base: every column index, every
// offset index, the file metadata, its length and the magic. last, when not
// nil, is the metadata of the last row group, which then holds none encoded.
func footer(tmpl *footerTemplate, groups []rowGroup, last *format.RowGroup, base int64) ([]byte, error) {
	if !tmpl.encoded {
		return nil, errors.New("no row group was encoded")
	}
	md := format.FileMetaData{
		Version:          tmpl.version,
		Schema:           tmpl.schema,
		CreatedBy:        tmpl.createdBy,
		ColumnOrders:     tmpl.columnOrders,
		KeyValueMetadata: tmpl.keyValues,
		RowGroups:        make([]format.RowGroup, len(groups)),
	}
	size := 0
	for i := range groups {
		size += len(groups[i].colIndex) + len(groups[i].offIndex)
	}
	b := make([]byte, 0, size+len(groups)*len(tmpl.paths)*256+1024)
	for i := range groups {
		b = append(b, groups[i].colIndex...)
	}
	offIndexes := base + int64(len(b))
	for i := range groups {
		b = append(b, groups[i].offIndex...)
	}
	colAt, offAt := base, offIndexes
	for i, g := range groups {
		rg := &md.RowGroups[i]
		if last != nil && i == len(groups)-1 {
			*rg = *last
		} else if err := thrift.Unmarshal(new(thrift.CompactProtocol), g.meta, rg); err != nil {
			return nil, fmt.Errorf("row group %d metadata: %w", i, err)
		}
		for j := range rg.Columns {
			c := &rg.Columns[j]
			c.MetaData.PathInSchema = tmpl.paths[j]
			if c.ColumnIndexLength > 0 {
				c.ColumnIndexOffset += colAt
			}
			if c.OffsetIndexLength > 0 {
				c.OffsetIndexOffset += offAt
			}
		}
		colAt += int64(len(g.colIndex))
		offAt += int64(len(g.offIndex))
		rg.Ordinal = int16(i)
		md.NumRows += rg.NumRows
	}
	meta, err := thrift.Marshal(new(thrift.CompactProtocol), &md)
	if err != nil {
		return nil, err
	}
	b = append(b, meta...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	return append(b, magic...), nil
}
