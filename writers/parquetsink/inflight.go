package parquetsink

import (
	"context"
	"sync"
)

// inflight counts the part uploads of one file that are still running. A
// checkpoint waits on it with a deadline; unlike a sync.WaitGroup, which can
// only be waited on with a deadline through a goroutine that stays behind
// until the uploads end, waiting here starts nothing, so a checkpoint that
// times out against a hung store leaves no goroutine behind.
//
// The zero value counts nothing.
type inflight struct {
	mu sync.Mutex
	n  int
	// idle is closed when n drops to zero; a new one is made when n leaves
	// zero, so a waiter holds the channel of the uploads it waits for.
	idle chan struct{}
}

// closedIdle stands for "nothing in flight" before the first Add.
var closedIdle = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (c *inflight) Add(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 && delta > 0 {
		c.idle = make(chan struct{})
	}
	c.n += delta
	switch {
	case c.n < 0:
		panic("parquetsink: negative count of uploads in flight")
	case c.n == 0 && delta < 0:
		close(c.idle)
	}
}

func (c *inflight) Done() { c.Add(-1) }

// done is closed once every upload counted so far has ended.
func (c *inflight) done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return closedIdle
	}
	return c.idle
}

// Wait blocks until every counted upload has ended.
func (c *inflight) Wait() { <-c.done() }

// wait is Wait bounded by ctx.
func (c *inflight) wait(ctx context.Context) error {
	done := c.done()
	select {
	case <-done:
		return nil // finished uploads win over a deadline that passed meanwhile
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
