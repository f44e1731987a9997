//! JSON-shaped values with distinct integers and floats.
//!
//! Strings are [`SmolStr`]: up to 23 bytes live inline (no allocation to parse, no atomic
//! reference count to clone), longer ones are shared. Arrays and objects sit behind an `Arc`
//! so that copying a sub-tree of the input into an output is a reference-count bump.
//! Every container knows its nesting depth, so the evaluator can refuse to build values
//! nested deeper than [`crate::limits::MAX_VALUE_DEPTH`] in O(children) instead of walking them.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use smol_str::SmolStr;

/// The string type used for values, keys and identifiers.
pub type Str = SmolStr;

/// An insertion-ordered object map.
pub type Map = IndexMap<Str, Value, foldhash::fast::RandomState>;

/// A value: what inputs, variables, expression results and outputs are made of.
///
/// `repr(u64)` gives the tag a word of its own instead of hiding it in a niche of the
/// string payload: values are copied a lot, and the niche layout compiles those copies
/// into overlapping partial moves that stall store-to-load forwarding.
#[derive(Clone, Debug, Default)]
#[repr(u64)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Str),
    Array(Arc<Array>),
    Object(Arc<Object>),
}

/// An array together with its nesting depth.
#[derive(Clone, Debug, Default)]
pub struct Array {
    items: Vec<Value>,
    depth: u32,
}

/// An object together with its nesting depth.
#[derive(Clone, Debug, Default)]
pub struct Object {
    map: Map,
    depth: u32,
}

impl Array {
    pub fn new(items: Vec<Value>) -> Self {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        Array { items, depth }
    }
    pub fn items(&self) -> &[Value] {
        &self.items
    }
    pub fn into_items(self) -> Vec<Value> {
        self.items
    }
}

impl std::ops::Deref for Array {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.items
    }
}

/// Up to this many keys, a lookup compares keys in order instead of hashing: for the
/// small objects rule inputs are made of, that is several times faster.
const SCAN_KEYS: usize = 8;

impl Object {
    /// The member `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        if self.map.len() <= SCAN_KEYS {
            self.map
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v)
        } else {
            self.map.get(key)
        }
    }

    /// The position and value of the member `key`.
    #[inline]
    pub(crate) fn find(&self, key: &Str) -> Option<(usize, &Value)> {
        if self.map.len() <= SCAN_KEYS {
            self.map
                .iter()
                .enumerate()
                .find(|(_, (k, _))| *k == key)
                .map(|(i, (_, v))| (i, v))
        } else {
            self.map.get_full(key.as_str()).map(|(i, _, v)| (i, v))
        }
    }

    pub fn new(map: Map) -> Self {
        let depth = 1 + map.values().map(Value::depth).max().unwrap_or(0);
        Object { map, depth }
    }
    pub fn map(&self) -> &Map {
        &self.map
    }
    pub fn into_map(self) -> Map {
        self.map
    }
}

impl std::ops::Deref for Object {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.map
    }
}

/// Integers of at most this magnitude convert to floats exactly, so comparing or
/// combining them as floats gives the exact answer.
pub(crate) const EXACT_IN_FLOAT: u64 = 1 << 53;

/// A new, empty map with the crate's hasher.
pub fn new_map(capacity: usize) -> Map {
    Map::with_capacity_and_hasher(capacity, Default::default())
}

impl Value {
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Arc::new(Array::new(items)))
    }

    pub fn object(map: Map) -> Value {
        Value::Object(Arc::new(Object::new(map)))
    }

    /// Builds an object from `(key, value)` pairs; a later duplicate key wins.
    pub fn object_from<K: Into<Str>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        let iter = pairs.into_iter();
        let mut map = new_map(iter.size_hint().0);
        for (k, v) in iter {
            map.insert(k.into(), v);
        }
        Value::object(map)
    }

    /// Parses JSON text.
    pub fn from_json_str(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Renders compact JSON text.
    pub fn to_json_string(&self) -> String {
        // Serializing our own Value into a String cannot fail: every variant maps to JSON
        // and non-finite floats are written as null.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Nesting depth: 0 for scalars, 1 for a flat array or object.
    pub fn depth(&self) -> u32 {
        match self {
            Value::Array(a) => a.depth,
            Value::Object(o) => o.depth,
            _ => 0,
        }
    }

    /// The type name used in error messages and by `type()`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// `null`, `false`, `0`, `0.0`, `""`, `[]` and `{}` are false; everything else is true.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// Either number type as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(&a.items),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(o) => Some(&o.map),
            _ => None,
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(o) => o.get(key),
            _ => None,
        }
    }

    /// Follows a dotted path (`a.b.0.c`): object keys, and array indices for numeric segments.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        let mut cur = self;
        if path.is_empty() {
            return Some(cur);
        }
        for seg in path.split('.') {
            cur = match cur {
                Value::Object(o) => o.get(seg)?,
                Value::Array(a) => a.items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Ordering for `< <= > >=`, `sort`, `min` and `max`: numbers with numbers (ints and
    /// floats compared exactly), strings with strings, bools with bools. `None` otherwise.
    #[inline]
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            // Fast path for the common "float field vs integer literal": every int of
            // magnitude up to 2^53 is exact as a float, so the float compare is exact.
            (Value::Float(a), Value::Int(b)) if b.unsigned_abs() <= EXACT_IN_FLOAT => {
                a.partial_cmp(&(*b as f64))
            }
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Float(b)) => cmp_int_float(*a, *b),
            (Value::Float(a), Value::Int(b)) => cmp_int_float(*b, *a).map(Ordering::reverse),
            (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Text form used by `to_string`, `join`, `format`: strings as they are, others as JSON.
    pub fn to_text(&self) -> Str {
        match self {
            Value::String(s) => s.clone(),
            Value::Int(i) => smol_str::format_smolstr!("{i}"),
            Value::Bool(b) => Str::new_static(if *b { "true" } else { "false" }),
            Value::Null => Str::new_static("null"),
            other => Str::from(other.to_json_string()),
        }
    }
}

/// Exact comparison of an integer with a float (no rounding through `as f64`).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^63 is exactly representable; every i64 is below it and at or above -2^63.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // `t` is integral and within i64 range here, so the cast is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        ord => Some(ord),
    }
}

/// Strict equality: `1 == 1.0` and `1 == true` are false; arrays and objects compare deeply,
/// objects regardless of key order.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => Arc::ptr_eq(a, b) || a.items == b.items,
            (Value::Object(a), Value::Object(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.map.len() == b.map.len()
                        && a.map.iter().all(|(k, v)| b.map.get(k) == Some(v)))
            }
            _ => false,
        }
    }
}

/// Values never hold NaN when produced by the engine (non-finite results are errors), so
/// equality is reflexive in practice; hashing agrees with the strict equality above.
impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            // 0.0 == -0.0, so both must hash alike.
            Value::Float(f) => (if *f == 0.0 { 0.0f64 } else { *f }).to_bits().hash(state),
            Value::String(s) => s.hash(state),
            Value::Array(a) => {
                a.items.len().hash(state);
                for v in &a.items {
                    v.hash(state);
                }
            }
            Value::Object(o) => {
                // Order-insensitive: combine per-entry hashes commutatively.
                let mut acc: u64 = 0;
                for (k, v) in &o.map {
                    let mut h = BuildHasher::build_hasher(&foldhash::fast::FixedState::default());
                    k.hash(&mut h);
                    v.hash(&mut h);
                    acc = acc.wrapping_add(h.finish());
                }
                o.map.len().hash(state);
                acc.hash(state);
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i64::from(i))
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i64::from(i))
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(Str::from(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(Str::from(s))
    }
}
impl From<Str> for Value {
    fn from(s: Str) -> Value {
        Value::String(s)
    }
}
impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::array(items)
    }
}
impl From<Map> for Value {
    fn from(map: Map) -> Value {
        Value::object(map)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.items.len()))?;
                for v in &a.items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.map.len()))?;
                for (k, v) in &o.map {
                    map.serialize_entry(k.as_str(), v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        // Integers beyond i64 keep their magnitude as a float rather than failing.
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        Ok(i64::try_from(i).map_or(Value::Float(i as f64), Value::Int))
    }
    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        if f.is_finite() {
            Ok(Value::Float(f))
        } else {
            Err(E::custom("non-finite numbers are not supported"))
        }
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(Str::from(s)))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(Str::from(s)))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = new_map(access.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = access.next_entry::<Str, Value>()? {
            map.insert(k, v);
        }
        Ok(Value::object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_ordering_is_exact() {
        assert_eq!(
            cmp_int_float(i64::MAX, 9_223_372_036_854_775_808.0),
            Some(Ordering::Less)
        );
        assert_eq!(cmp_int_float(3, 3.0), Some(Ordering::Equal));
        assert_eq!(cmp_int_float(3, 3.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-3, -3.5), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(i64::MIN, -9.3e18), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(0, f64::NAN), None);
    }

    #[test]
    fn depth_is_tracked() {
        let v = Value::from_json_str(r#"{"a":[1,[2]],"b":3}"#).unwrap_or_default();
        assert_eq!(v.depth(), 3);
        assert_eq!(Value::Int(1).depth(), 0);
    }
}
