//! What end-to-end tests share: [`browser`], a real browser's look at a local page.

pub mod browser;
