package parquetsink

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// punchHole frees the disk blocks of f's bytes [off, off+n), keeping its
// size: reads there return zeros. A filesystem that cannot (EOPNOTSUPP)
// gives errors.ErrUnsupported.
func punchHole(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return errors.ErrUnsupported
	}
	return err
}
