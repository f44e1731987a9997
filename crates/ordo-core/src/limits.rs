//! Hard bounds that keep every parse, compile and execution finite and off the stack's edge.
//!
//! They are deliberately generous for real rules and small enough that an adversarial
//! ruleset or input cannot exhaust memory, time or stack.

/// Longest accepted expression text, in bytes.
pub const MAX_EXPR_LEN: usize = 64 * 1024;
/// Deepest bracket/operator nesting the parser descends into (`((((x))))`, `!!!!x`, ...).
pub const MAX_EXPR_NESTING: u32 = 64;
/// Deepest expression tree accepted, however it was written (long `a || b || ...` chains
/// build deep trees without brackets).
pub const MAX_EXPR_DEPTH: u32 = 256;
/// Deepest value an execution may build (inputs are limited by their JSON parser).
pub const MAX_VALUE_DEPTH: u32 = 256;
/// Longest string an expression may produce, in bytes.
pub const MAX_STRING_BYTES: usize = 4 * 1024 * 1024;
/// Most elements an array or object produced by an expression may hold.
pub const MAX_COLLECTION_LEN: usize = 1 << 20;
/// Upper bound for a ruleset's `max_depth` (steps per execution).
pub const MAX_STEPS: u32 = 100_000;
/// Deepest chain of sub-rules calling sub-rules.
pub const MAX_SUB_RULE_NESTING: usize = 16;
/// Compiled size limit for one regular expression, in bytes.
pub const MAX_REGEX_SIZE: usize = 1024 * 1024;
/// Longest accepted regular-expression, glob or format pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;
