//! Rulesets after validation: the compiled form and the compiler that produces it.

pub(crate) mod compile;
pub(crate) mod compiled;
