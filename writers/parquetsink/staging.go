package parquetsink

import (
	"unsafe"

	"github.com/parquet-go/parquet-go"
)

// staging holds a file's rows that no encoder has taken yet. Decoded rows
// point into the decoder's buffer, so staged rows copy their bytes into
// fixed-size chunks: a growing single arena would leave its old copies alive
// behind the values that point into them.
type staging struct {
	values []parquet.Value
	ends   []int32 // row i is values[ends[i-1]:ends[i]]
	chunks [][]byte
	raw    int64 // the rows' plain size: what the encoder will buffer for them
	mem    int64 // memory held, by capacity
}

const (
	stagingChunk = 16 << 10
	valueSize    = int64(unsafe.Sizeof(parquet.Value{}))
)

func (s *staging) rows() int { return len(s.ends) }

func (s *staging) add(row parquet.Row) {
	before := cap(s.values)
	for _, v := range row {
		if v.Kind() == parquet.ByteArray && !v.IsNull() {
			b := s.copyBytes(v.ByteArray())
			v = parquet.ByteArrayValue(b).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
			s.raw += int64(len(b)) + 4
		} else {
			s.raw += 8
		}
		s.values = append(s.values, v)
	}
	if cap(s.ends) == len(s.ends) {
		s.mem -= int64(cap(s.ends)) * 4
		s.ends = append(s.ends, int32(len(s.values)))
		s.mem += int64(cap(s.ends)) * 4
	} else {
		s.ends = append(s.ends, int32(len(s.values)))
	}
	s.mem += int64(cap(s.values)-before) * valueSize
}

func (s *staging) copyBytes(b []byte) []byte {
	if len(b) > stagingChunk/4 {
		s.mem += int64(len(b))
		s.chunks = append(s.chunks, append([]byte(nil), b...))
		return s.chunks[len(s.chunks)-1]
	}
	last := len(s.chunks) - 1
	if last < 0 || cap(s.chunks[last])-len(s.chunks[last]) < len(b) {
		// Chunks start small and double: most of thousands of open files
		// hold a few rows.
		size := 1 << 10
		if last >= 0 {
			size = min(stagingChunk, 2*cap(s.chunks[last]))
		}
		for size < len(b) {
			size *= 2
		}
		s.chunks = append(s.chunks, make([]byte, 0, size))
		s.mem += int64(size)
		last++
	}
	c := s.chunks[last]
	off := len(c)
	c = append(c, b...)
	s.chunks[last] = c
	return c[off:len(c):len(c)]
}

// row returns staged row i; it stays valid until reset.
func (s *staging) row(i int) parquet.Row {
	start := int32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.values[start:s.ends[i]]
}

// reset empties the staging. A small one keeps its memory for the next rows;
// a large one (a file that staged without an encoder) gives it back, because
// thousands of idle files must not each keep their peak.
func (s *staging) reset() {
	if s.mem > 4*stagingChunk {
		*s = staging{}
		return
	}
	clear(s.values) // drop references into the chunks
	s.values = s.values[:0]
	s.ends = s.ends[:0]
	s.raw = 0
	s.mem = int64(cap(s.values))*valueSize + int64(cap(s.ends))*4
	if len(s.chunks) > 0 && cap(s.chunks[0]) <= stagingChunk {
		clear(s.chunks[1:])
		s.chunks = append(s.chunks[:0], s.chunks[0][:0])
		s.mem += int64(cap(s.chunks[0]))
	} else {
		clear(s.chunks)
		s.chunks = s.chunks[:0]
	}
}
