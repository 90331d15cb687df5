//! Key material is wiped when it is dropped.

use std::mem::ManuallyDrop;

use crate::crypto::Key;

/// Drops `value` in place (its storage stays valid, inside a
/// `ManuallyDrop`) and returns the bytes at `at` afterwards.
fn bytes_after_drop<T>(value: T, at: impl Fn(&T) -> *const u8, len: usize) -> Vec<u8> {
    let mut slot = ManuallyDrop::new(value);
    let p = at(&slot);
    // SAFETY: `slot` is dropped exactly once and never used again; its
    // memory (on this stack frame) stays allocated, so reading it after
    // the drop reads what the destructor left there.
    unsafe {
        ManuallyDrop::drop(&mut slot);
        (0..len).map(|i| std::ptr::read_volatile(p.add(i))).collect()
    }
}

#[test]
fn the_key_bytes_are_zeroed_when_a_key_is_dropped() {
    let key = Key::from_bytes(&[0xAB; 32]);
    assert_eq!(key.bytes(), &[0xAB; 32]);
    let left = bytes_after_drop(key, |k| k.bytes().as_ptr(), 32);
    assert_eq!(left, vec![0u8; 32], "key bytes survive the drop");
}

#[test]
fn a_generated_key_is_zeroed_too() {
    let key = Key::generate();
    assert_ne!(key.bytes(), &[0u8; 32]);
    assert_eq!(bytes_after_drop(key, |k| k.bytes().as_ptr(), 32), vec![0u8; 32]);
}
