//! Library root (placeholder until the pipeline lands).
