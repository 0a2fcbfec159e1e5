//! End-to-end lab tests live in `tests/`; this crate has no library code.
