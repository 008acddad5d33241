package parquetsink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

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
// to where the page now sits. base is the file offset of b[0]. It returns the
// new end of b.
func spliceRowGroup(b []byte, start int, base int64, tmpl *footerTemplate) ([]byte, rowGroup, error) {
	var g rowGroup
	one := b[start:]
	n := len(one)
	if n < 12 || string(one[:4]) != "PAR1" || string(one[n-4:]) != "PAR1" {
		return nil, g, errors.New("encoder output is not a Parquet file")
	}
	footerLen := int(binary.LittleEndian.Uint32(one[n-8 : n-4]))
	if footerLen > n-12 {
		return nil, g, errors.New("encoder output has a footer longer than the file")
	}
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), one[n-8-footerLen:n-8], &md); err != nil {
		return nil, g, fmt.Errorf("reading the encoder's footer: %w", err)
	}
	if len(md.RowGroups) != 1 {
		return nil, g, fmt.Errorf("encoder wrote %d row groups, want 1", len(md.RowGroups))
	}
	if !tmpl.encoded {
		tmpl.encoded, tmpl.version, tmpl.schema, tmpl.columnOrders, tmpl.keyValues = true, md.Version, md.Schema, md.ColumnOrders, md.KeyValueMetadata
	}
	rg := &md.RowGroups[0]
	if len(rg.Columns) != len(tmpl.paths) {
		return nil, g, fmt.Errorf("encoder wrote %d column chunks, the schema has %d columns", len(rg.Columns), len(tmpl.paths))
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
			return nil, g, fmt.Errorf("column chunk %d starts at %d, want %d", i, first, chunksEnd)
		}
		if m.BloomFilterOffset != 0 {
			return nil, g, errors.New("bloom filters are not supported")
		}
		chunksEnd += m.TotalCompressedSize
	}
	if chunksEnd > int64(n-8-footerLen) {
		return nil, g, errors.New("column chunks overrun the footer")
	}
	index := one[chunksEnd : n-8-footerLen]
	delta := base + int64(start) - 4 // chunk bytes move from offset 4 to base+start
	rg.FileOffset += delta
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
				return nil, g, fmt.Errorf("column index of column %d is outside the page index", i)
			}
			c.ColumnIndexOffset = int64(len(g.colIndex))
			// Column indexes hold no offsets: their bytes move as they are.
			g.colIndex = append(g.colIndex, index[from:from+int64(c.ColumnIndexLength)]...)
		}
		if c.OffsetIndexLength > 0 {
			from := c.OffsetIndexOffset - chunksEnd
			if from < 0 || from+int64(c.OffsetIndexLength) > int64(len(index)) {
				return nil, g, fmt.Errorf("offset index of column %d is outside the page index", i)
			}
			var oi format.OffsetIndex
			if err := thrift.Unmarshal(new(thrift.CompactProtocol), index[from:from+int64(c.OffsetIndexLength)], &oi); err != nil {
				return nil, g, fmt.Errorf("reading the offset index of column %d: %w", i, err)
			}
			for j := range oi.PageLocations {
				oi.PageLocations[j].Offset += delta
			}
			enc, err := thrift.Marshal(new(thrift.CompactProtocol), &oi)
			if err != nil {
				return nil, g, err
			}
			c.OffsetIndexOffset = int64(len(g.offIndex))
			c.OffsetIndexLength = int32(len(enc))
			g.offIndex = append(g.offIndex, enc...)
		}
	}
	meta, err := thrift.Marshal(new(thrift.CompactProtocol), rg)
	if err != nil {
		return nil, g, err
	}
	// Held until the file rolls, by thousands of files: exact sizes.
	g.meta, g.colIndex, g.offIndex = bytes.Clone(meta), bytes.Clone(g.colIndex), bytes.Clone(g.offIndex)
	copy(one, one[4:chunksEnd])
	return b[:start+int(chunksEnd)-4], g, nil
}

// footer returns what ends a file made of the given row groups once their
// pages are written, starting at file offset base: every column index, every
// offset index, the file metadata, its length and the magic.
func footer(tmpl *footerTemplate, groups []rowGroup, base int64) ([]byte, error) {
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
	var b []byte
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
		if err := thrift.Unmarshal(new(thrift.CompactProtocol), g.meta, rg); err != nil {
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
