//! Every object key in a vault, and the parsers that map keys back to what
//! they name (FORMAT.md §4 (layout)). Pure: no I/O.
//!
//! ```text
//! segments/00000000000000000000      segment 0 (genesis), a DSSE envelope
//! segments/00000000000000000001      segment 1, ...
//! packs/3f/3f9a...e1                 a pack, named by the BLAKE3 of its bytes
//! checkpoint                         the latest checkpoint (the one mutable object)
//! ```
//!
//! Sequence numbers are zero-padded to 20 digits so that a lexicographic
//! listing is in log order.

use crate::hash::Blake3Id;

/// Prefix under which segments live.
pub const SEGMENTS_DIR: &str = "segments";
/// Prefix under which packs live.
pub const PACKS_DIR: &str = "packs";
/// The latest checkpoint: a C2SP signed note; a hint, the log is the truth.
pub const CHECKPOINT: &str = "checkpoint";
/// Local vaults only: the lock file that serialises checkpoint updates. Not
/// part of the evidence and ignored by verification.
pub const LOCAL_LOCK: &str = "checkpoint.lock";

/// Prefix under which witness cosignatures of checkpoints live.
pub const WITNESSED_DIR: &str = "witnessed";

/// The key of witness `witness`'s cosigned checkpoint of size `size`: the
/// vault's signed checkpoint with the witness's cosignature line appended.
pub fn witnessed_path(size: u64, witness: &str) -> String {
    let id = crate::hash::Sha256Digest::of(witness.as_bytes()).to_hex();
    format!("{WITNESSED_DIR}/{size:020}/{}", &id[..16])
}

/// The checkpoint size a witnessed key names, if it is one.
pub fn parse_witnessed_path(key: &str) -> Option<u64> {
    let rest = key.strip_prefix(WITNESSED_DIR)?.strip_prefix('/')?;
    let (digits, id) = rest.split_once('/')?;
    if digits.len() != 20
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || id.len() != 16
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    digits.parse().ok()
}

/// The key of segment `seq`.
pub fn segment_path(seq: u64) -> String {
    format!("{SEGMENTS_DIR}/{seq:020}")
}

/// The sequence number a segment key names, if it is one.
pub fn parse_segment_path(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(SEGMENTS_DIR)?.strip_prefix('/')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The key of the pack whose bytes hash to `id`.
pub fn pack_path(id: &Blake3Id) -> String {
    let hex = id.to_hex();
    format!("{PACKS_DIR}/{}/{hex}", &hex[..2])
}

/// The pack id a pack key names, if it is one (the fan-out directory must
/// match the id).
pub fn parse_pack_path(key: &str) -> Option<Blake3Id> {
    let rest = key.strip_prefix(PACKS_DIR)?.strip_prefix('/')?;
    let (fan, hex) = rest.split_once('/')?;
    let id = Blake3Id::parse(hex).ok()?;
    (fan.len() == 2 && hex.starts_with(fan)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_paths() {
        let table = [
            (0, "segments/00000000000000000000"),
            (42, "segments/00000000000000000042"),
            (u64::MAX, "segments/18446744073709551615"),
        ];
        for (seq, key) in table {
            assert_eq!(segment_path(seq), key);
            assert_eq!(parse_segment_path(key), Some(seq));
        }
        for bad in [
            "segments/42",
            "segments/0000000000000000004x",
            "segments/000000000000000000042",
            "segment/00000000000000000042",
            "segments/99999999999999999999",
        ] {
            assert_eq!(parse_segment_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn pack_paths() {
        let id = Blake3Id::of(b"pack");
        let key = pack_path(&id);
        assert_eq!(key, format!("packs/{}/{}", &id.to_hex()[..2], id.to_hex()));
        assert_eq!(parse_pack_path(&key), Some(id));
        let wrong_fan = format!("packs/zz/{}", id.to_hex());
        assert_eq!(parse_pack_path(&wrong_fan), None);
        assert_eq!(parse_pack_path("packs/ab"), None);
    }

    proptest! {
        #[test]
        fn segment_path_round_trip(seq in any::<u64>()) {
            prop_assert_eq!(parse_segment_path(&segment_path(seq)), Some(seq));
        }
        #[test]
        fn segment_paths_sort_in_log_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), segment_path(a).cmp(&segment_path(b)));
        }
        #[test]
        fn pack_path_round_trip(bytes in any::<[u8; 32]>()) {
            let id = Blake3Id(bytes);
            prop_assert_eq!(parse_pack_path(&pack_path(&id)), Some(id));
        }
    }
}
