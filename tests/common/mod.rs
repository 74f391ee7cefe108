//! Helpers shared by integration tests. Each test binary compiles this module and uses a
//! part of it, so the rest would be reported as dead code in that binary.
#![allow(dead_code)]

pub mod examples;
