//! One gate for the process's CUDA work, so that capturing a CUDA graph never races with
//! another thread's.
//!
//! ONNX Runtime captures CUDA graphs in CUDA's global capture mode: while one thread
//! captures, a `cudaMalloc`, a cuBLAS handle's creation or a synchronising call on *any*
//! other thread fails (`cublasCreate`: "the library was not initialized"), and the
//! capture ends in CUDA error 901. In a process of several pipelines that is what happens
//! when `sd2deepfake` loads its model (and captures) while other streams' `sd2facedetect`
//! open sessions for new shapes or run.
//!
//! So every CUDA session this crate opens, runs or drops ([`Gated`]) holds the gate shared
//! ([`shared`]), and a capture holds it alone ([`exclusive`]): a capture waits for the runs
//! in flight and holds the others back until it ends (once, when a model loads). Holding
//! it again on a thread that holds it already is free, so callers need not know whether a
//! caller up the stack took it. Work outside this crate (another library's CUDA) is not
//! gated.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

thread_local! {
    /// How many gates this thread holds (of either kind).
    static HELD: Cell<usize> = const { Cell::new(0) };
}

enum Hold {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
    /// The thread already held the gate.
    Nested,
}

/// The gate, held until dropped. Not `Send`: it is released on the thread that took it.
#[must_use = "the gate is released when this is dropped"]
pub struct CudaGate {
    _hold: Hold,
    _thread: PhantomData<*const ()>,
}

impl CudaGate {
    /// Whether this gate holds the lock alone.
    pub fn is_exclusive(&self) -> bool {
        matches!(self._hold, Hold::Exclusive(_))
    }
}

impl Drop for CudaGate {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get() - 1));
    }
}

fn take(hold: impl FnOnce() -> Hold) -> CudaGate {
    // Counted once held: a panic while taking the lock leaves the count as it was.
    let hold = if HELD.with(Cell::get) == 0 {
        hold()
    } else {
        Hold::Nested
    };
    HELD.with(|h| h.set(h.get() + 1));
    CudaGate {
        _hold: hold,
        _thread: PhantomData,
    }
}

/// Held by CUDA work that may run beside other such work: opening or running a session.
pub fn shared() -> CudaGate {
    take(|| Hold::Shared(GATE.read().unwrap_or_else(PoisonError::into_inner)))
}

/// Held while CUDA graphs are captured: waits until no other thread holds the gate. `None`
/// when this thread holds it shared already (it cannot wait for itself): capture then is
/// not safe here, and the caller should not capture.
pub fn exclusive() -> Option<CudaGate> {
    if HELD.with(Cell::get) > 0 {
        return None;
    }
    Some(take(|| {
        Hold::Exclusive(GATE.write().unwrap_or_else(PoisonError::into_inner))
    }))
}

/// A value holding CUDA resources (a session, device memory), dropped under the gate:
/// freeing device memory or destroying a cuBLAS handle is work that a capture on another
/// thread must not meet, and a stream that stops can meet a model that loads.
pub struct Gated<T> {
    /// `None` only while being dropped.
    value: Option<T>,
    cuda: bool,
}

impl<T> Gated<T> {
    /// `value`, dropped under the gate when `cuda` (else as usual).
    pub fn new(value: T, cuda: bool) -> Self {
        Gated {
            value: Some(value),
            cuda,
        }
    }
}

impl<T> std::ops::Deref for Gated<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for Gated<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("present until dropped")
    }
}

impl<T> Gated<T> {
    /// The value, no longer dropped under the gate: for a caller that puts it at once into
    /// something gated itself.
    pub fn into_inner(mut self) -> T {
        self.value.take().expect("present until dropped")
    }
}

impl<T> Drop for Gated<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            let _gate = self.cuda.then(shared);
            drop(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_thread_holds_the_gate_again_without_waiting_for_itself() {
        let outer = shared();
        let inner = shared();
        assert!(
            exclusive().is_none(),
            "an exclusive gate under a shared one"
        );
        drop(inner);
        drop(outer);
        let capture = exclusive().expect("nothing held");
        assert!(capture.is_exclusive());
        // Work the capture itself does (its runs) goes through.
        let nested = shared();
        assert!(!nested.is_exclusive());
    }

    #[test]
    fn a_cuda_value_is_dropped_under_the_gate() {
        struct Probe(std::sync::Arc<AtomicBool>);
        impl Drop for Probe {
            fn drop(&mut self) {
                // The gate is held here: an exclusive one cannot be taken.
                self.0.store(exclusive().is_none(), Ordering::SeqCst);
            }
        }
        for cuda in [true, false] {
            let gated = std::sync::Arc::new(AtomicBool::new(false));
            drop(Gated::new(Probe(gated.clone()), cuda));
            assert_eq!(gated.load(Ordering::SeqCst), cuda);
        }
    }

    #[test]
    fn a_capture_waits_for_work_in_flight_and_holds_new_work_back() {
        // Another thread is running: the capture must wait until it ends.
        let (started, running) = mpsc::channel();
        let (finish, finished) = mpsc::channel::<()>();
        let ended = std::sync::Arc::new(AtomicBool::new(false));
        let worker = {
            let ended = ended.clone();
            std::thread::spawn(move || {
                let _gate = shared();
                started.send(()).unwrap();
                finished.recv().unwrap();
                ended.store(true, Ordering::SeqCst);
            })
        };
        running.recv().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            finish.send(()).unwrap();
        });
        let capture = exclusive().expect("nothing held here");
        assert!(
            ended.load(Ordering::SeqCst),
            "the capture began while another thread's work was in flight"
        );
        worker.join().unwrap();
        releaser.join().unwrap();

        // While it captures, another thread's work waits for it.
        let capturing = std::sync::Arc::new(AtomicBool::new(true));
        let waiter = {
            let capturing = capturing.clone();
            std::thread::spawn(move || {
                let _gate = shared();
                assert!(
                    !capturing.load(Ordering::SeqCst),
                    "work ran during the capture"
                );
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        capturing.store(false, Ordering::SeqCst);
        drop(capture);
        waiter.join().unwrap();
    }
}
