//! The endpoints the proxy rewrites: pure rewrites in submodules, their I/O here.
pub mod create;
pub mod exec;
pub mod json;
pub mod present;
