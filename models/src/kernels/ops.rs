//! The operators as ONNX Runtime sees them: name, typed inputs and outputs, and the
//! execution provider whose kernel each registration holds.

use ort::operator::{
    BoxedKernel, ComputeContext, KernelContext, Operator, OperatorInput, OperatorOutput,
};
use ort::value::TensorElementType;

use super::cuda::{self, Gpu};
use super::{Elem, Op, cpu};

/// One registration of an operator: its element type and where its kernel runs.
pub(super) struct Sd2Operator {
    op: Op,
    elem: Elem,
    cuda: bool,
}

impl Sd2Operator {
    pub fn cpu(op: Op, elem: Elem) -> Self {
        Sd2Operator {
            op,
            elem,
            cuda: false,
        }
    }

    pub fn cuda(op: Op, elem: Elem) -> Self {
        Sd2Operator {
            op,
            elem,
            cuda: true,
        }
    }

    /// Whether `gpu` runs `op` on `elem`: the FP8 operators need compute capability 8.9
    /// and take float16 activations there (cuBLASLt's FP8 GEMM writes float16).
    pub fn runs_on_cuda(op: Op, elem: Elem, gpu: &Gpu) -> bool {
        !op.fp8() || (gpu.has_fp8() && elem == Elem::F16)
    }
}

fn float(elem: Elem) -> TensorElementType {
    match elem {
        Elem::F32 => TensorElementType::Float32,
        Elem::F16 => TensorElementType::Float16,
    }
}

impl Operator for Sd2Operator {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        self.op.name()
    }

    fn execution_provider_type(&self) -> Option<&str> {
        self.cuda.then_some("CUDAExecutionProvider")
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        let t = || OperatorInput::required(float(self.elem));
        let scale = || OperatorInput::required(TensorElementType::Float32);
        let codes = || OperatorInput::required(TensorElementType::Uint8);
        match self.op {
            Op::Linear => vec![t(), t(), OperatorInput::optional(float(self.elem))],
            Op::BiasQuickGelu => vec![t(), t()],
            Op::QuantizeE4M3 => vec![t(), scale()],
            Op::BiasQuickGeluE4M3 => vec![t(), t(), scale()],
            Op::LinearE4M3 => vec![codes(), codes(), scale(), scale(), t()],
        }
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        let out = match self.op {
            Op::Linear | Op::BiasQuickGelu | Op::LinearE4M3 => float(self.elem),
            Op::QuantizeE4M3 | Op::BiasQuickGeluE4M3 => TensorElementType::Uint8,
        };
        [OperatorOutput::required(out)]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        let (op, elem) = (self.op, self.elem);
        if self.cuda {
            return Ok(Box::new(cuda::Kernel::new(op, elem)?));
        }
        Ok(Box::new(move |ctx: &ComputeContext| {
            cpu::compute(op, elem, ctx)
        }))
    }
}
