//! SIGTERM and SIGINT, received by one thread with `sigwait` rather than by a handler:
//! they are blocked in every thread (blocked before any thread starts, every thread
//! inherits the mask), so none is interrupted and the waiting thread may do anything.

/// The signals that stop the monitor.
const STOPPING: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOPPING {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks SIGTERM and SIGINT in this thread and the threads it starts later: call it
/// first in `main`.
pub fn block() {
    let set = set();
    // SAFETY: the set is initialised; a null old set is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGTERM or SIGINT and names it.
pub fn wait() -> &'static str {
    let set = set();
    let mut signal: libc::c_int = 0;
    loop {
        // SAFETY: the set is initialised and `signal` is a valid place to write.
        let rc = unsafe { libc::sigwait(&set, &mut signal) };
        if rc == 0 {
            return if signal == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
        }
    }
}
