//! Giving freed heap memory back to the system.

/// Return the C allocator's free memory to the system (`malloc_trim(0)`). glibc keeps
/// what was freed in its per-thread arenas, so a burst of expired sessions would stay
/// resident (issue 23; measured in docs/src/benchmarks/memory.md). The call takes no pointers
/// and glibc locks its arenas itself; no maintained crate wraps it safely. Returns
/// whether memory was given back. It can take milliseconds on a large heap: call it
/// from a blocking thread. A no-op (`false`) where the allocator is not glibc's.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes a padding size, no pointer, and locks each arena itself.
    let released = unsafe { libc::malloc_trim(0) } != 0;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let released = false;
    released
}
