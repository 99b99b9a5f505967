//! One node's CUDA kernel: its inputs' device pointers and shapes, and the launch or GEMM
//! on ONNX Runtime's compute stream.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use cudarc::driver::sys::CUfunction;
use ort::operator::ComputeContext;
use ort::value::{DynTensorValueType, ValueRef, ValueType};

use super::blas::{self, Gemm, Operands};
use super::nvrtc::{self, Target};
use super::source::{ELEMENTWISE_SOURCE, FP8_SOURCE, Source};
use super::{available, driver};
use crate::kernels::{Elem, Op};

/// A node's kernel on CUDA.
pub struct Kernel {
    op: Op,
    elem: Elem,
    /// The compiled element-wise kernels, for the operators that launch one.
    image: Option<&'static [u8]>,
    /// The vector and scalar kernels, found at the first run.
    functions: Option<(CUfunction, CUfunction)>,
    gemm: Option<Gemm>,
}

// SAFETY: the raw handles are used by one thread at a time (ONNX Runtime runs a kernel
// from one thread per run) and are valid in any thread of the process.
unsafe impl Send for Kernel {}

/// Compiled images by source and architecture.
type Images = HashMap<(&'static str, u32), &'static [u8]>;

/// Images compiled, each once per process.
static IMAGES: OnceLock<Mutex<Images>> = OnceLock::new();

/// `source` compiled for this GPU: a cubin, so the driver need not JIT newer PTX than it
/// knows.
fn image(source: &Source, arch: u32) -> Result<&'static [u8], String> {
    let mut images = IMAGES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(&i) = images.get(&(source.name, arch)) {
        return Ok(i);
    }
    let compiled = nvrtc::compile(source, Target::Cubin(arch)).map_err(|e| e.to_string())?;
    let leaked: &'static [u8] = Box::leak(compiled.into_boxed_slice());
    images.insert((source.name, arch), leaked);
    Ok(leaked)
}

fn error(op: Op, msg: impl std::fmt::Display) -> ort::Error {
    ort::Error::new(format!("com.sd2:{} (CUDA): {msg}", op.name()))
}

/// A tensor on the device: its address and shape.
struct Tensor {
    ptr: u64,
    shape: Vec<i64>,
}

impl Tensor {
    fn of(v: ValueRef<'_>) -> ort::Result<Self> {
        let shape = match v.dtype() {
            ValueType::Tensor { shape, .. } => shape.to_vec(),
            _ => Vec::new(),
        };
        let t = v.downcast::<DynTensorValueType>()?;
        Ok(Tensor {
            ptr: t.data_ptr() as u64,
            shape,
        })
    }

    fn len(&self) -> u64 {
        self.shape.iter().map(|&d| d.max(0) as u64).product()
    }

    fn last(&self) -> u64 {
        self.shape.last().map_or(0, |&d| d.max(0) as u64)
    }
}

impl Kernel {
    /// Compiles what `op` launches for the GPU: a source that does not compile fails the
    /// session's creation, naming NVRTC's log.
    pub fn new(op: Op, elem: Elem) -> ort::Result<Self> {
        let gpu = available().map_err(|m| error(op, m))?;
        let source = match op {
            Op::Linear | Op::LinearE4M3 => None,
            Op::BiasQuickGelu => Some(&ELEMENTWISE_SOURCE),
            Op::QuantizeE4M3 | Op::BiasQuickGeluE4M3 => Some(&FP8_SOURCE),
        };
        let image = source
            .map(|s| image(s, gpu.arch()))
            .transpose()
            .map_err(|e| error(op, e))?;
        Ok(Kernel {
            op,
            elem,
            image,
            functions: None,
            gemm: None,
        })
    }

    fn input(&self, ctx: &ComputeContext, i: usize) -> ort::Result<Tensor> {
        let v = ctx
            .input(i)?
            .ok_or_else(|| error(self.op, format!("input {i} is missing")))?;
        Tensor::of(v)
    }

    fn output(&self, ctx: &ComputeContext, shape: Vec<i64>) -> ort::Result<u64> {
        let out = ctx
            .output(0, shape)?
            .ok_or_else(|| error(self.op, "no output"))?;
        // ValueRefMut gives no `&mut Value`; `data_ptr` reads the same writable address.
        let t = out.downcast::<DynTensorValueType>()?;
        Ok(t.data_ptr() as u64)
    }

    /// The element-wise kernel's vector and scalar variants.
    fn functions(&mut self) -> Result<(CUfunction, CUfunction), String> {
        if let Some(f) = self.functions {
            return Ok(f);
        }
        let image = self.image.ok_or("no kernel compiled")?;
        let name = match (self.op, self.elem) {
            (Op::BiasQuickGelu, Elem::F16) => "bias_quick_gelu_f16",
            (Op::BiasQuickGelu, Elem::F32) => "bias_quick_gelu_f32",
            (Op::QuantizeE4M3, _) => "quantize_e4m3_f16",
            (Op::BiasQuickGeluE4M3, _) => "bias_quick_gelu_e4m3_f16",
            _ => return Err("not an element-wise operator".into()),
        };
        let vector = driver::function(image, name)?;
        let scalar = if self.elem == Elem::F16 {
            driver::function(image, &format!("{name}_scalar"))?
        } else {
            vector
        };
        self.functions = Some((vector, scalar));
        Ok((vector, scalar))
    }

    /// Launches the element-wise kernel over `n` values (rows of `cols`): `pointers` are
    /// its pointer arguments, in order, then `n` and (with `cols`) the row length.
    fn elementwise(
        &mut self,
        stream: *mut c_void,
        pointers: &mut [u64],
        n: u64,
        cols: Option<u64>,
    ) -> Result<(), String> {
        if n == 0 {
            return Ok(());
        }
        let (vector, scalar) = self.functions()?;
        let wide = self.elem == Elem::F16
            && n.is_multiple_of(8)
            && cols.is_none_or(|c| c.is_multiple_of(8));
        let (f, items) = if wide { (vector, n / 8) } else { (scalar, n) };
        let mut n = n as i64;
        let mut cols = cols.unwrap_or(1) as i32;
        let mut args: Vec<*mut c_void> = pointers
            .iter_mut()
            .map(|p| (p as *mut u64).cast::<c_void>())
            .collect();
        args.push((&mut n as *mut i64).cast());
        if self.op != Op::QuantizeE4M3 {
            args.push((&mut cols as *mut i32).cast());
        }
        driver::launch(f, items, stream, &mut args)
    }

    fn gemm(&mut self, kind: blas::Kind, n: u64, k: u64, bias: bool) -> Result<&mut Gemm, String> {
        if !self.gemm.as_ref().is_some_and(|g| g.fits(n, k, bias)) {
            self.gemm = Some(Gemm::new(kind, n, k, bias)?);
        }
        Ok(self.gemm.as_mut().expect("just made"))
    }

    fn run(&mut self, ctx: &ComputeContext, stream: *mut c_void) -> ort::Result<()> {
        let op = self.op;
        let fail = |e: String| error(op, e);
        match op {
            Op::Linear => {
                let (x, w) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
                let bias = match ctx.input(2)? {
                    Some(b) => Some(Tensor::of(b)?.ptr),
                    None => None,
                };
                let &[k, n] = w.shape.as_slice() else {
                    return Err(fail(format!("W must be 2-D, found {:?}", w.shape)));
                };
                if x.last() != k as u64 {
                    return Err(fail(format!(
                        "X {:?} does not fit W {:?}",
                        x.shape, w.shape
                    )));
                }
                let mut shape = x.shape.clone();
                *shape.last_mut().expect("has K") = n;
                let y = self.output(ctx, shape)?;
                let m = x.len() / (k.max(1) as u64);
                let kind = match self.elem {
                    Elem::F32 => blas::Kind::F32,
                    Elem::F16 => blas::Kind::F16,
                };
                let ops = Operands {
                    x: x.ptr,
                    w: w.ptr,
                    bias,
                    scales: None,
                    y,
                };
                if m > 0 {
                    let g = self
                        .gemm(kind, n as u64, k as u64, bias.is_some())
                        .map_err(fail)?;
                    g.run(m, &ops, stream).map_err(fail)?;
                }
                Ok(())
            }
            Op::LinearE4M3 => {
                let (q, w) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
                let (sq, sw, b) = (
                    self.input(ctx, 2)?,
                    self.input(ctx, 3)?,
                    self.input(ctx, 4)?,
                );
                let &[n, k] = w.shape.as_slice() else {
                    return Err(fail(format!("W must be 2-D, found {:?}", w.shape)));
                };
                if q.last() != k as u64 || b.len() != n as u64 {
                    return Err(fail(format!(
                        "Q {:?}, W {:?} and B {:?} do not fit",
                        q.shape, w.shape, b.shape
                    )));
                }
                let mut shape = q.shape.clone();
                *shape.last_mut().expect("has K") = n;
                let y = self.output(ctx, shape)?;
                let m = q.len() / (k.max(1) as u64);
                let ops = Operands {
                    x: q.ptr,
                    w: w.ptr,
                    bias: Some(b.ptr),
                    scales: Some((sq.ptr, sw.ptr)),
                    y,
                };
                if m > 0 {
                    let g = self
                        .gemm(blas::Kind::E4M3, n as u64, k as u64, true)
                        .map_err(fail)?;
                    g.run(m, &ops, stream).map_err(fail)?;
                }
                Ok(())
            }
            Op::BiasQuickGelu | Op::BiasQuickGeluE4M3 => {
                let (x, b) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
                if b.len() != x.last() {
                    return Err(fail(format!(
                        "B {:?} does not fit X {:?}",
                        b.shape, x.shape
                    )));
                }
                let y = self.output(ctx, x.shape.clone())?;
                let mut pointers = vec![x.ptr, b.ptr];
                if op == Op::BiasQuickGeluE4M3 {
                    pointers.push(self.input(ctx, 2)?.ptr);
                }
                pointers.push(y);
                self.elementwise(stream, &mut pointers, x.len(), Some(x.last()))
                    .map_err(fail)
            }
            Op::QuantizeE4M3 => {
                let (x, s) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
                let y = self.output(ctx, x.shape.clone())?;
                self.elementwise(stream, &mut [x.ptr, s.ptr, y], x.len(), None)
                    .map_err(fail)
            }
        }
    }
}

impl ort::operator::Kernel for Kernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let stream = ctx
            .stream()?
            .ok_or_else(|| error(self.op, "ONNX Runtime gave no CUDA stream"))?;
        self.run(ctx, stream.as_ptr())
    }
}
