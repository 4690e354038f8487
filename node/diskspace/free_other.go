//go:build !(linux || darwin || freebsd)

package diskspace

import "errors"

// Free is not implemented on this system: the watcher then logs that the
// free space is unknown, and does not limit writes.
func Free(dir string) (uint64, error) { return 0, errors.ErrUnsupported }
