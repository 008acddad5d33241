package parquetsink

import (
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestRowBatchOwnsBytes: decoded rows point into the decoder's buffer, which
// the next record overwrites; a batched row must keep its own copy of byte
// arrays and fixed-length byte arrays (wide decimals, UUIDs) alike.
func TestRowBatchOwnsBytes(t *testing.T) {
	buf := []byte("stringUUIDUUIDUUIDUUID")
	row := parquet.Row{
		parquet.ByteArrayValue(buf[:6]).Level(0, 1, 0),
		parquet.FixedLenByteArrayValue(buf[6:22]).Level(0, 1, 1),
	}
	var b rowBatch
	b.add(row)
	copy(buf, "XXXXXXXXXXXXXXXXXXXXXX")
	got := b.take()[0]
	if string(got[0].ByteArray()) != "string" || string(got[1].ByteArray()) != "UUIDUUIDUUIDUUID" {
		t.Errorf("batched row changed with the decoder's buffer: %q %q", got[0].ByteArray(), got[1].ByteArray())
	}
	if got[1].Kind() != parquet.FixedLenByteArray || got[1].DefinitionLevel() != 1 || got[1].Column() != 1 {
		t.Errorf("batched value lost its kind or levels: %v", got[1])
	}
}
