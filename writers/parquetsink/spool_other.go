//go:build !linux

package parquetsink

import (
	"errors"
	"os"
)

// punchHole is Linux's fallocate(FALLOC_FL_PUNCH_HOLE); elsewhere released
// bytes stay counted until their segment goes.
func punchHole(*os.File, int64, int64) error { return errors.ErrUnsupported }
