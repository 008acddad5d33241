package parquetsink

import "sync/atomic"

// Budget is the one memory budget shared by every open file of every Parquet
// writer: encoded bytes not yet uploaded plus the row groups being built
// (DESIGN §4). It is a counter, not an allocator: writers charge what they hold
// and relieve pressure when it is over.
type Budget struct {
	limit int64
	used  atomic.Int64
}

func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

func (b *Budget) Add(n int64) { b.used.Add(n) }

// Reserve sets n bytes aside for what the budget covers but the writers do
// not hold, such as the source's fetch buffers: they count as used for good.
func (b *Budget) Reserve(n int64) { b.used.Add(n) }
func (b *Budget) Used() int64     { return b.used.Load() }
func (b *Budget) Limit() int64    { return b.limit }
func (b *Budget) Over() bool      { return b.used.Load() > b.limit }
func (b *Budget) AboveLow() bool  { return b.used.Load() > b.limit-b.limit/8 }
