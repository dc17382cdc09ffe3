//! A list of byte strings packed into one value, with random access to each: a block's
//! transactions, or its receipts, stored as one B-tree entry instead of one per transaction.
//!
//! Layout: the count `n` (u32, little-endian), then `n` end offsets (u32, little-endian, relative
//! to the start of the data), then the items back to back. Reading item `i` touches only the
//! header and that item.

/// Packs `items` into one value.
pub(crate) fn pack<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let count = items.len();
    let mut header = Vec::with_capacity(4 + 4 * count);
    header.extend_from_slice(&(count as u32).to_le_bytes());
    let mut data = Vec::new();
    for item in items {
        data.extend_from_slice(item);
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
    }
    header.extend_from_slice(&data);
    header
}

/// How many items a packed value holds; `None` if it is malformed.
pub(crate) fn count(packed: &[u8]) -> Option<usize> {
    let count = u32::from_le_bytes(packed.get(..4)?.try_into().ok()?) as usize;
    (packed.len() >= 4 + count.checked_mul(4)?).then_some(count)
}

/// Item `index` of a packed value: `Ok(None)` past the end, `Err(())` if the value is malformed.
pub(crate) fn item(packed: &[u8], index: usize) -> Result<Option<&[u8]>, ()> {
    let count = count(packed).ok_or(())?;
    if index >= count {
        return Ok(None);
    }
    let end_of = |at: usize| -> Result<usize, ()> {
        let offset = 4 + 4 * at;
        let bytes = packed.get(offset..offset + 4).ok_or(())?;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| ())?) as usize)
    };
    let start = if index == 0 { 0 } else { end_of(index - 1)? };
    let end = end_of(index)?;
    let data = &packed[4 + 4 * count..];
    data.get(start..end).map(Some).ok_or(())
}

/// Every item of a packed value, in order; `None` if it is malformed.
pub(crate) fn items(packed: &[u8]) -> Option<Vec<&[u8]>> {
    let count = count(packed)?;
    (0..count)
        .map(|index| item(packed, index).ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every list packs and reads back item by item and whole.
        #[test]
        fn a_packed_list_reads_back(list in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..30)) {
            let packed = pack(list.iter().map(Vec::as_slice));
            prop_assert_eq!(count(&packed), Some(list.len()));
            for (index, expected) in list.iter().enumerate() {
                prop_assert_eq!(item(&packed, index), Ok(Some(expected.as_slice())));
            }
            prop_assert_eq!(item(&packed, list.len()), Ok(None));
            let all: Vec<Vec<u8>> = items(&packed).expect("items").into_iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(all, list);
        }

        /// Any bytes at all read as a list or as malformed, never as a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), index in 0usize..8) {
            let _ = item(&bytes, index);
            let _ = items(&bytes);
        }
    }

    #[test]
    fn offsets_past_the_data_are_malformed() {
        let mut packed = pack([b"ab".as_slice(), b"c".as_slice()].into_iter());
        packed[8] = 200;
        assert_eq!(item(&packed, 1), Err(()));
        assert_eq!(items(&packed), None);
    }
}
