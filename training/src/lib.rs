//! `sd2-train`: SD² (paper §4) in burn.

pub mod clip;
pub mod lora;
pub mod tokenizer;
