package store

import "errors"

// ErrLowSpace is returned by a write refused because the disk that holds
// the store is nearly full (see DB.SetSpaceCheck).
var ErrLowSpace = errors.New("not enough free disk space")

// SetSpaceCheck makes every write of the store ask check first, and fail
// with its error when it returns one; the error should wrap ErrLowSpace.
//
// Badger maps its files into memory: a write into a mapped page that the
// file system cannot back (a full disk, a full tmpfs) kills the process
// with SIGBUS, which no error handling can catch. So the node stops
// writing while some free space is left, and check is what says so. A nil
// check allows every write.
func (d *DB) SetSpaceCheck(check func() error) {
	if check == nil {
		d.space.Store(nil)
		return
	}
	d.space.Store(&check)
}

// room returns the space check's refusal, or nil when a write may go on.
func (d *DB) room() error {
	check := d.space.Load()
	if check == nil {
		return nil
	}
	return (*check)()
}
