package store

// durableMode is whether badger syncs every commit (SyncWrites), which is
// how the store makes durable writes durable.
//
// The alternative, SyncWrites off and a sync after each durable commit (a
// group sync: one sync serves every commit made before it started), was
// measured with BenchmarkDurableWrite on this project's 2-core CI machine
// (ext4 on a virtual disk, shared with other work, so the figures spread):
//
//	                     1 writer        8 writers
//	syncwrites           0.9–3.4 ms      1.0–2.6 ms per write
//	sync-after-commit    2.1–4.0 ms      0.7–0.95 ms per write
//	no sync at all       50–75 µs        50–93 µs per write
//
// One writer pays one device flush either way. Concurrent writers do better
// with the group sync, because badger syncs its write-ahead log once per
// transaction, not per batch. SyncWrites is chosen all the same:
//
//   - it is correct by construction. badger's DB.Sync syncs only the active
//     memtable's log, so a commit that lands just before the memtable is
//     rotated is not covered by the sync after it, and is lost if the power
//     fails before that memtable is flushed to a table;
//   - the node's writes are few: users' actions and peers' requests, each
//     paid for with a hashcash stamp, tens per second at most, against some
//     400–1000 a second that SyncWrites sustains;
//   - the price, that writes which need not be durable (spent stamps, meta
//     values) also wait for a flush, is a millisecond or two off the hot path
//     of no one.
//
// Repositories still say which writes must be durable (DB.update's durable
// argument), so that the mode can change without reading every caller.
const durableMode = true

// durable makes every commit made so far reach the disk. Under SyncWrites
// badger has done so before the commit returned. Otherwise one sync serves
// every caller that committed before it started (a group sync), with the
// gap described at durableMode.
func (d *DB) durable() error {
	if d.syncWrites {
		return nil
	}
	want := d.commits.Add(1)
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if d.syncedUpTo >= want {
		return nil // a sync that started after our commit covered it
	}
	upTo := d.commits.Load()
	if err := d.Sync(); err != nil {
		return err
	}
	d.syncedUpTo = upTo
	return nil
}
