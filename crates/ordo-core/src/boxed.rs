//! Boxed slices that own exactly their length.

/// `items` as a boxed slice in an allocation of exactly its length.
///
/// `Vec::into_boxed_slice` shrinks with `realloc`, and allocators such as mimalloc
/// answer a shrink to half the size or more by keeping the block: a slice built by
/// pushing (room for four after the first push) would hold up to twice its size for as
/// long as the compiled ruleset lives. Moving the items into an exact allocation costs
/// a copy once, at compile time.
pub(crate) fn exact<T>(items: Vec<T>) -> Box<[T]> {
    if items.len() == items.capacity() {
        return items.into_boxed_slice();
    }
    let mut out = Vec::with_capacity(items.len());
    out.extend(items);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::exact;

    #[test]
    fn keeps_every_item_in_order() {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(i.to_string());
        }
        assert!(v.capacity() > v.len());
        assert_eq!(&*exact(v), ["0", "1", "2", "3", "4"]);
        assert!(exact(Vec::<u8>::new()).is_empty());
    }
}
