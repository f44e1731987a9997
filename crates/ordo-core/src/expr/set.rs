//! A literal collection (`x in ["US", "CA", ...]`) prepared for membership tests.
//!
//! Small sets are scanned (a handful of comparisons beats hashing); larger ones are
//! hashed. Either way membership means strict equality, like `==`.

use std::collections::HashSet;

use crate::value::Value;

/// Up to this many elements, a linear scan is used.
const SCAN_LIMIT: usize = 8;

#[derive(Debug)]
pub(crate) enum LiteralSet {
    Scan(Box<[Value]>),
    Hashed(HashSet<Value, foldhash::fast::RandomState>),
}

impl LiteralSet {
    pub(crate) fn new(items: &[Value]) -> LiteralSet {
        if items.len() <= SCAN_LIMIT {
            LiteralSet::Scan(items.into())
        } else {
            LiteralSet::Hashed(items.iter().cloned().collect())
        }
    }

    pub(crate) fn items(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match self {
            LiteralSet::Scan(items) => Box::new(items.iter()),
            LiteralSet::Hashed(set) => Box::new(set.iter()),
        }
    }

    #[inline]
    pub(crate) fn contains(&self, v: &Value) -> bool {
        match self {
            LiteralSet::Scan(items) => items.iter().any(|x| x == v),
            LiteralSet::Hashed(set) => set.contains(v),
        }
    }
}
