//! Locking the proxy's shared maps and caches (std mutexes, held for a few map operations and
//! never across an await or anything that panics), taking a poisoned lock as it is: its data
//! cannot be half-changed.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
