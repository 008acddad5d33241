//go:build integration

package parquetsink

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/scripts/readers/duckdb"
)

// duckdbBuckets are the buckets each codec's files are written to: one large
// enough to roll into several files, some of them multipart, and two small
// ones that take the single encoder from it.
var duckdbBuckets = []struct {
	name    string
	rows    int
	payload func(i int) int // payload length of the bucket's row i
}{
	{name: "0", rows: 11_000, payload: func(i int) int { return 600 + i%800 }},
	{name: "1", rows: 5_000, payload: func(i int) int { return 20 + i%60 }},
	{name: "2", rows: 1_500, payload: func(i int) int { return 20 + i%60 }},
}

// duckdbCodecs maps our compression setting to the codec name DuckDB reports.
var duckdbCodecs = map[string]string{"snappy": "SNAPPY", "zstd": "ZSTD", "gzip": "GZIP", "none": "UNCOMPRESSED"}

// writtenCodec is what one codec's writer produced.
type writtenCodec struct {
	uploads   []checkpoint.Entry
	rowGroups int64 // row groups the writer reports it built
}

// TestDuckDBReadsAssembledFiles writes the same rows through the real Writer
// once per codec, with one encoder shared by three buckets, tiny row groups and
// pages, files that roll on size and span several 5 MiB parts, then reads every
// committed file with DuckDB, which shares no code with our writer or with
// parquet-go: rows, aggregates, footers, statistics and filtered scans that
// prune row groups by those statistics must all agree with the input.
func TestDuckDBReadsAssembledFiles(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]assemblyRow{}
	for b, spec := range duckdbBuckets {
		rows := makeAssemblyRows(b, spec.rows)
		for i := range rows {
			rows[i].payload = noise(int(rows[i].id), spec.payload(i))
		}
		want[spec.name] = rows
	}

	root := t.TempDir()
	written := map[string]writtenCodec{}
	for codec := range duckdbCodecs {
		written[codec] = writeForDuckDB(t, codec, want, filepath.Join(root, "codec="+codec))
	}
	source := fmt.Sprintf("read_parquet('%s/**/*.parquet', hive_partitioning = true, hive_types_autocast = false, filename = true, file_row_number = true)", root)

	// One query per question across all codecs: each query starts a node process.
	aggregates := duckdb.Query(t, `SELECT codec, b, count(*) AS n, sum(id) AS id_sum, min(id) AS id_min, max(id) AS id_max,
		sum(amount) AS amount_sum, min(amount) AS amount_min, max(amount) AS amount_max, count(*) FILTER (WHERE note IS NULL) AS null_notes
		FROM `+source+` GROUP BY ALL ORDER BY codec, b`)
	rows := duckdb.Query(t, `SELECT codec, b, filename, file_row_number AS file_row, id, note, amount, md5(payload) AS payload_md5
		FROM `+source+` ORDER BY codec, id`)
	// Every column chunk of every row group; the id column is picked by its
	// position, so that a wrong path_in_schema is reported rather than
	// filtering the chunk out.
	meta := duckdb.Query(t, fmt.Sprintf(`SELECT file_name, row_group_id, row_group_num_rows, column_id, path_in_schema,
		stats_min_value, stats_max_value, compression
		FROM parquet_metadata('%s/**/*.parquet') ORDER BY file_name, row_group_id, column_id`, root))
	ranges := filterRanges(want)
	filtered := duckdb.Query(t, filterQuery(source, ranges))

	for codec, duck := range duckdbCodecs {
		t.Run(codec, func(t *testing.T) {
			w := written[codec]
			checkUploads(t, w.uploads)
			isCodec := func(s string) bool { return s == codec }
			inCodecDir := func(name string) bool { return strings.Contains(name, "/codec="+codec+"/") }
			checkAggregates(t, rowsWhere(aggregates, "codec", isCodec), want)
			files := checkRows(t, rowsWhere(rows, "codec", isCodec), want)
			checkFooters(t, rowsWhere(meta, "file_name", inCodecDir), files, w, duck)
			checkFiltered(t, rowsWhere(filtered, "codec", isCodec), ranges, want)
		})
	}
}

// writeForDuckDB writes want through a Writer with the given codec, commits
// the files and copies them under dir, keeping their keys.
func writeForDuckDB(t *testing.T, codec string, want map[string][]assemblyRow, dir string) writtenCodec {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(o *Options) {
		o.Schema = assemblySchema
		o.MaxEncoders = 1
		o.PartSize = 5 << 20
		o.Config.Compression = codec
		o.Config.RowGroupSize = 64 << 10
		o.Config.PageSize = 4 << 10
		o.Config.TargetFileSize = 6 << 20
		o.Metrics = NewMetrics(reg, o.Budget)
	})
	ctx := context.Background()
	// Buckets are picked in proportion to the rows they have left, so that all
	// three stay interleaved to the end and keep taking the encoder away from
	// each other.
	next := map[string]int{}
	left := 0
	for _, rows := range want {
		left += len(rows)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for seq := int64(0); left > 0; seq++ {
		pick := rng.IntN(left)
		for _, spec := range duckdbBuckets {
			remaining := len(want[spec.name]) - next[spec.name]
			if pick >= remaining {
				pick -= remaining
				continue
			}
			row := want[spec.name][next[spec.name]]
			next[spec.name]++
			if err := f.w.Write(ctx, []byte("b="+spec.name), row.row(), rec(0, seq)); err != nil {
				t.Fatal(err)
			}
			break
		}
		left--
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	prep := f.commit(t)
	for key, body := range f.readFiles(t) {
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return writtenCodec{uploads: prep.Uploads, rowGroups: counterValue(t, reg, "sinkd_parquet_row_groups_total")}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) int64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return int64(sum)
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// checkUploads makes sure the write exercised what the test is about: a
// bucket rolled into several files, and a file made of several parts.
func checkUploads(t *testing.T, uploads []checkpoint.Entry) {
	t.Helper()
	perBucket := map[string]int{}
	maxParts := 0
	for _, u := range uploads {
		perBucket[u.Key[:strings.IndexByte(u.Key, '/')]]++
		maxParts = max(maxParts, len(u.Parts))
	}
	if perBucket["b=0"] < 2 {
		t.Fatalf("bucket b=0 rolled into %d files, want several: %v", perBucket["b=0"], perBucket)
	}
	if maxParts < 2 {
		t.Fatalf("no file spans two parts or more: %+v", uploads)
	}
	t.Logf("%d files, %v per bucket, up to %d parts in one", len(uploads), perBucket, maxParts)
}

func checkAggregates(t *testing.T, got []map[string]any, want map[string][]assemblyRow) {
	t.Helper()
	var expected []map[string]any
	for _, spec := range duckdbBuckets {
		rows := want[spec.name]
		var idSum int64
		var amountSum float64
		var nullNotes int64
		for _, r := range rows {
			idSum += r.id
			amountSum += r.amount
			if r.note == nil {
				nullNotes++
			}
		}
		expected = append(expected, map[string]any{
			"b": spec.name, "n": int64(len(rows)),
			"id_sum": idSum, "id_min": rows[0].id, "id_max": rows[len(rows)-1].id,
			"amount_sum": amountSum, "amount_min": rows[0].amount, "amount_max": rows[len(rows)-1].amount,
			"null_notes": nullNotes,
		})
	}
	for _, row := range got {
		delete(row, "codec")
	}
	if !reflect.DeepEqual(got, expected) {
		t.Fatalf("aggregates per bucket:\n got %v\nwant %v", got, expected)
	}
}

// checkRows compares every row DuckDB read with the input and returns the ids
// of each file in the file's own row order.
func checkRows(t *testing.T, got []map[string]any, want map[string][]assemblyRow) map[string][]int64 {
	t.Helper()
	var expected []assemblyRow
	for _, spec := range duckdbBuckets {
		expected = append(expected, want[spec.name]...)
	}
	if len(got) != len(expected) {
		t.Fatalf("DuckDB read %d rows, want %d", len(got), len(expected))
	}
	type located struct{ row, id int64 }
	byFile := map[string][]located{}
	for i, r := range expected {
		var note any
		if r.note != nil {
			note = *r.note
		}
		sum := md5.Sum([]byte(r.payload))
		g := got[i]
		wantRow := map[string]any{"b": strconv.Itoa(int(r.id / 1_000_000)), "id": r.id, "note": note, "amount": r.amount, "payload_md5": hex.EncodeToString(sum[:])}
		name, fileRow := g["filename"].(string), g["file_row"].(int64)
		delete(g, "codec")
		delete(g, "filename")
		delete(g, "file_row")
		if !reflect.DeepEqual(g, wantRow) {
			t.Fatalf("row %d (%s row %d):\n got %v\nwant %v", i, name, fileRow, g, wantRow)
		}
		byFile[name] = append(byFile[name], located{fileRow, r.id})
	}
	files := map[string][]int64{}
	for name, rows := range byFile {
		slices.SortFunc(rows, func(a, b located) int { return int(a.row - b.row) })
		ids := make([]int64, len(rows))
		for i, r := range rows {
			if r.row != int64(i) {
				t.Fatalf("%s: file row numbers skip from %d to %d", name, i, r.row)
			}
			ids[i] = r.id
		}
		files[name] = ids
	}
	return files
}

// assemblyLeaves are assemblySchema's leaf columns in file order.
var assemblyLeaves = []string{"amount", "id", "note", "payload"}

// checkFooters compares the row groups DuckDB finds in each file's footer with
// what the writer built and with the rows the file holds: each row group's id
// statistics must be the minimum and maximum of exactly its own rows, and
// every column chunk must name its column. (parquet-go writes min_value and
// max_value, which DuckDB shows as stats_min_value and stats_max_value; the
// deprecated min and max, DuckDB's stats_min and stats_max, stay unset, as in
// files parquet-go writes in one piece.)
func checkFooters(t *testing.T, meta []map[string]any, files map[string][]int64, w writtenCodec, compression string) {
	t.Helper()
	groups := map[string][]map[string]any{} // file → its id column chunks, in row group order
	var unnamed []string
	for _, m := range meta {
		name, column := m["file_name"].(string), m["column_id"].(int64)
		if column < 0 || column >= int64(len(assemblyLeaves)) {
			t.Fatalf("%s: row group %v has a column %d", name, m["row_group_id"], column)
		}
		if m["path_in_schema"] != assemblyLeaves[column] {
			unnamed = append(unnamed, fmt.Sprintf("%s row group %v column %d: path_in_schema %q, want %q",
				name[strings.Index(name, "/codec="):], m["row_group_id"], column, m["path_in_schema"], assemblyLeaves[column]))
		}
		if c := m["compression"]; c != compression {
			t.Fatalf("%s: row group %v column %d compression %v, want %s", name, m["row_group_id"], column, c, compression)
		}
		if assemblyLeaves[column] == "id" {
			groups[name] = append(groups[name], m)
		}
	}
	if len(unnamed) > 0 {
		t.Errorf("%d of %d column chunks do not name their column in path_in_schema (Spark, Athena and parquet-mr look columns up by it), the first: %s",
			len(unnamed), len(meta), strings.Join(unnamed[:min(3, len(unnamed))], "; "))
	}
	if len(groups) != len(w.uploads) || len(files) != len(w.uploads) {
		t.Fatalf("DuckDB sees %d files with footers and %d with rows; %d were committed", len(groups), len(files), len(w.uploads))
	}
	rowsPerKey := map[string]int64{}
	for _, u := range w.uploads {
		rowsPerKey[u.Key] = u.Rows
	}
	var total int64
	for name, rgs := range groups {
		ids, ok := files[name]
		if !ok {
			t.Fatalf("%s has a footer but no rows", name)
		}
		key := name[strings.Index(name, "/b=")+1:]
		if int64(len(ids)) != rowsPerKey[key] {
			t.Fatalf("%s: DuckDB read %d rows; the writer put %d in %s", name, len(ids), rowsPerKey[key], key)
		}
		if len(rgs) < 2 {
			t.Fatalf("%s: %d row group; the writer should have built several", name, len(rgs))
		}
		total += int64(len(rgs))
		first := int64(0)
		for g, rg := range rgs {
			if id := rg["row_group_id"].(int64); id != int64(g) {
				t.Fatalf("%s: row group %d is numbered %d", name, g, id)
			}
			n := rg["row_group_num_rows"].(int64)
			if n <= 0 || first+n > int64(len(ids)) {
				t.Fatalf("%s: row group %d has %d rows at row %d of %d", name, g, n, first, len(ids))
			}
			own := ids[first : first+n]
			lo, hi := strconv.FormatInt(slices.Min(own), 10), strconv.FormatInt(slices.Max(own), 10)
			if rg["stats_min_value"] != lo || rg["stats_max_value"] != hi {
				t.Fatalf("%s: row group %d id statistics %v..%v, its rows hold %s..%s", name, g, rg["stats_min_value"], rg["stats_max_value"], lo, hi)
			}
			first += n
		}
		if first != int64(len(ids)) {
			t.Fatalf("%s: row groups hold %d rows, the file %d", name, first, len(ids))
		}
	}
	if total != w.rowGroups {
		t.Fatalf("DuckDB sees %d row groups; the writer built %d", total, w.rowGroups)
	}
	t.Logf("%d row groups in %d files", total, len(groups))
}

// idRange is one filtered scan: ids lo..hi inclusive.
type idRange struct{ lo, hi int64 }

// filterRanges picks scans inside one row group's worth of rows, across many
// row groups and files of the large bucket, across buckets, and past the data.
func filterRanges(want map[string][]assemblyRow) []idRange {
	big, small := want["0"], want["1"]
	return []idRange{
		{big[5000].id, big[5003].id},
		{big[100].id, big[len(big)-100].id},
		{big[len(big)-10].id, small[10].id},
		{small[len(small)-1].id + 1, small[len(small)-1].id + 500},
	}
}

func filterQuery(source string, ranges []idRange) string {
	var parts []string
	for i, r := range ranges {
		parts = append(parts, fmt.Sprintf(`SELECT codec, %d AS scan, count(*) AS n, coalesce(sum(id), 0) AS id_sum, count(note) AS notes, coalesce(sum(amount), 0) AS amount_sum
			FROM %s WHERE id BETWEEN %d AND %d GROUP BY codec`, i, source, r.lo, r.hi))
	}
	return strings.Join(parts, " UNION ALL ") + " ORDER BY codec, scan"
}

func checkFiltered(t *testing.T, got []map[string]any, ranges []idRange, want map[string][]assemblyRow) {
	t.Helper()
	var expected []map[string]any
	for i, r := range ranges {
		var n, idSum, notes int64
		var amountSum float64
		for _, rows := range want {
			for _, row := range rows {
				if row.id < r.lo || row.id > r.hi {
					continue
				}
				n++
				idSum += row.id
				amountSum += row.amount
				if row.note != nil {
					notes++
				}
			}
		}
		if n == 0 {
			// A GROUP BY over no rows gives no row at all.
			continue
		}
		expected = append(expected, map[string]any{"scan": int64(i), "n": n, "id_sum": idSum, "notes": notes, "amount_sum": amountSum})
	}
	for _, row := range got {
		delete(row, "codec")
	}
	if !reflect.DeepEqual(got, expected) {
		t.Fatalf("filtered scans %v:\n got %v\nwant %v", ranges, got, expected)
	}
}

// rowsWhere keeps the rows whose column holds a string that keep accepts.
func rowsWhere(rows []map[string]any, column string, keep func(string) bool) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		if s, ok := r[column].(string); ok && keep(s) {
			out = append(out, r)
		}
	}
	return out
}
