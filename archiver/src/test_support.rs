//! Shared by the crate's tests.

use parking_lot::Mutex;

/// Tests that back up under the temp dir run one at a time: the temp dir
/// is an ancestor of every source, so another test creating files there
/// changes the snapshot's tree (and these tests also count this process's
/// `arch-*` threads).
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());
