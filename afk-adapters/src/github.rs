//! GitHub (placeholder until written).
