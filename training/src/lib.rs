//! `sd2-train`: SD² (paper §4) in burn.

pub mod clam;
pub mod clip;
pub mod data;
pub mod dropout;
pub mod eval;
pub mod export;
pub mod kernels;
pub mod labels;
pub mod lora;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod precision;
pub mod report;
pub mod tokenizer;
pub mod train;
