//! `sd2-train`: SD² (paper §4) in burn.

pub mod tokenizer;
