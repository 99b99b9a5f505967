//! LoRA's dropout masks (paper §5.1: p = 0.1), each a function of a stream's seed and the
//! mask's place in the forward pass, never of other threads or of earlier runs.
//!
//! A forward pass runs inside [`with_stream`]; every mask it draws takes the stream's next
//! key. On the CPU (`flex`) a mask is filled in one pass from a counter-based generator
//! (SplitMix64 at `key + i·γ`: element `i` needs no element before it). Elsewhere it is
//! drawn on the device by burn's generator, seeded with the mask's key under a process-wide
//! lock (burn keeps one generator per process), so devices that run at once still draw the
//! masks their keys say. The two generators differ: a run is reproducible on the same kind
//! of device.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

use burn::prelude::*;
use burn::tensor::Distribution;

use crate::data::rng::{GAMMA, mix64};

/// The keys of one forward pass's masks.
#[derive(Clone, Copy)]
struct Stream {
    seed: u64,
    drawn: u64,
}

thread_local! {
    /// The stream of the forward pass running on this thread; outside [`with_stream`], a
    /// stream of seed 0 that runs on.
    static STREAM: Cell<Stream> = const { Cell::new(Stream { seed: 0, drawn: 0 }) };
}

/// burn's generator is one per process: seeding it and drawing from it is one turn.
static DEVICE_DRAW: Mutex<()> = Mutex::new(());

/// Runs `f` with the masks it draws keyed by `seed` (the first mask by `seed` and 0, the
/// next by `seed` and 1, …); the thread's earlier stream is back afterwards.
pub fn with_stream<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let before = STREAM.with(|s| s.replace(Stream { seed, drawn: 0 }));
    struct Restore(Stream);
    impl Drop for Restore {
        fn drop(&mut self) {
            STREAM.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

/// The key of the next mask of this thread's stream.
fn next_key() -> u64 {
    STREAM.with(|s| {
        let mut stream = s.get();
        let key = mix64(stream.seed ^ mix64(stream.drawn.wrapping_add(GAMMA)));
        stream.drawn += 1;
        s.set(stream);
        key
    })
}

/// `x` with each element zeroed with probability `p` and the rest scaled by `1 / (1 − p)`,
/// when `x` is on an autodiff (training) device and `p > 0`; `x` itself otherwise.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    let device = x.device();
    if p <= 0.0 || !device.is_autodiff() {
        return x;
    }
    let keep = 1.0 - p;
    let key = next_key();
    let mask = if device.clone().inner() == Device::flex() {
        let data = keep_mask(x.dims().iter().product(), keep, key);
        Tensor::from_data(TensorData::new(data, x.dims()), &device)
    } else {
        let _turn = DEVICE_DRAW.lock().unwrap_or_else(PoisonError::into_inner);
        device.seed(key);
        x.random_like(Distribution::Bernoulli(keep))
            .mul_scalar(1.0 / keep)
    };
    x * mask
}

/// `n` values, each `1 / keep` with probability `keep` and 0 otherwise, from the 64-bit
/// outputs `mix64(key + (j + 1)·γ)`: the low 32 bits decide element `2j`, the high ones
/// element `2j + 1`.
pub fn keep_mask(n: usize, keep: f64, key: u64) -> Vec<f32> {
    // An element is kept when its 32 bits are below `keep · 2³²`.
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let scale = (1.0 / keep) as f32;
    let value = |bits: u64| {
        if (bits as u32) < threshold {
            scale
        } else {
            0.0
        }
    };
    let mut out = vec![0.0f32; n];
    let mut state = key;
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        state = state.wrapping_add(GAMMA);
        let z = mix64(state);
        pair[0] = value(z);
        pair[1] = value(z >> 32);
    }
    if let [last] = pairs.into_remainder() {
        *last = value(mix64(state.wrapping_add(GAMMA)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeps_its_share_and_scales_what_it_keeps() {
        let m = keep_mask(100_001, 0.9, 7);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "{kept}");
        assert!(m.iter().all(|&v| v == 0.0 || v == (1.0 / 0.9) as f32));
        // The mean is preserved: E[mask] = 1.
        let mean = m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
    }

    #[test]
    fn a_mask_is_its_key_alone_and_its_elements_are_not_in_step() {
        assert_eq!(keep_mask(1001, 0.5, 3), keep_mask(1001, 0.5, 3));
        assert_ne!(keep_mask(1001, 0.5, 3), keep_mask(1001, 0.5, 4));
        // A longer mask of the same key starts with the shorter one.
        assert_eq!(keep_mask(1001, 0.5, 3)[..], keep_mask(4000, 0.5, 3)[..1001]);
        // Neighbours (the two halves of one draw among them) agree half of the time, as
        // independent coins would.
        let m = keep_mask(100_000, 0.5, 11);
        let same = m.windows(2).filter(|w| w[0] == w[1]).count() as f64 / 99_999.0;
        assert!((same - 0.5).abs() < 0.01, "{same}");
    }

    #[test]
    fn streams_key_masks_by_seed_and_order_whatever_ran_before() {
        let device = Device::flex().autodiff();
        let x = || Tensor::<2>::ones([64, 64], &device);
        let draw = |seed| with_stream(seed, || [dropout(x(), 0.5), dropout(x(), 0.5)]);
        let [a1, a2] = draw(5);
        let _ = dropout(x(), 0.5); // outside a stream: changes nothing after
        let [b1, b2] = draw(5);
        a1.clone().into_data().assert_eq(&b1.into_data(), true);
        a2.clone().into_data().assert_eq(&b2.into_data(), true);
        let [c1, _] = draw(6);
        assert_ne!(a1.clone().into_data(), c1.into_data());
        assert_ne!(a1.into_data(), a2.into_data());
    }

    #[test]
    fn inference_and_a_zero_rate_leave_the_input_alone() {
        let x = Tensor::<2>::ones([8, 8], &Device::flex());
        dropout(x.clone(), 0.5)
            .into_data()
            .assert_eq(&x.clone().into_data(), true);
        let x = x.to_device(&Device::flex().autodiff());
        dropout(x.clone(), 0.0)
            .into_data()
            .assert_eq(&x.into_data(), true);
    }
}
