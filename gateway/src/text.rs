//! Text every store can hold.
//!
//! PostgreSQL's `text` cannot hold a NUL character (U+0000): a value with
//! one fails the whole statement ("invalid byte sequence for encoding
//! UTF8: 0x00"). SQLite and the memory store keep it. Text that comes from
//! outside and is stored as text (plugins' message ids, event types and
//! content types, an object id read from a body, destinations' answers)
//! goes through [`without_nul`] before any store sees it, so every engine
//! stores the same text and none refuses a webhook for it (the PostgreSQL
//! engine applies it again to attempts' texts, its own guard). Text that
//! only selects (an id in a URL, a filter) or that a client sends to be
//! stored as given (the `/v1` API's fields) is refused with a 400 instead.
//!
//! PostgreSQL also bounds what one index entry holds (2,704 bytes in a
//! b-tree, after compression), and provider ids and event types are
//! indexed (the dedup key, the console's search and filters). So an id or
//! event type a plugin gives is at most [`MAX_KEY_BYTES`] on every engine
//! ([`key`]); the `/v1` API refuses longer ones.

use sha2::{Digest, Sha256};

/// The longest id or event type kept as given, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// How much of a longer one is kept, before its digest.
const KEPT_PREFIX_BYTES: usize = 128;

/// `text` with each NUL replaced by U+FFFD, the character that stands for
/// what text cannot show. Allocates only when there is one.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// An id or event type as the gateway keeps it: [`without_nul`], and one
/// longer than [`MAX_KEY_BYTES`] becomes its first 128 bytes, `…sha256:`
/// and the SHA-256 of the whole in hex (202 bytes at most). The same long
/// id always gives the same key, and two that differ anywhere give two,
/// so a provider's retry is still a duplicate and nothing else is; a
/// provider's ids are far shorter (GitHub's are 36 bytes, Stripe's about
/// 30).
pub fn key(text: String) -> String {
    let text = without_nul(text);
    if text.len() <= MAX_KEY_BYTES {
        return text;
    }
    let mut cut = KEPT_PREFIX_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(text.as_bytes());
    format!("{}…sha256:{}", &text[..cut], hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_key_keeps_its_start_and_a_digest_of_the_whole() {
        let short = "x".repeat(MAX_KEY_BYTES);
        assert_eq!(key(short.clone()), short, "up to the limit, as given");
        let long = format!("{}a", "é".repeat(200));
        let k = key(long.clone());
        assert!(k.len() <= 202, "{}", k.len());
        assert!(k.starts_with(&"é".repeat(64)), "{k}");
        assert!(k.contains("…sha256:"));
        assert_eq!(key(long), k, "the same id, the same key");
        let other = format!("{}b", "é".repeat(200));
        assert_ne!(key(other), k, "another id, another key");
        assert_eq!(key("a\0b".into()), "a\u{FFFD}b");
    }

    #[test]
    fn each_nul_becomes_a_replacement_character() {
        assert_eq!(without_nul("a\0b\0".into()), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(without_nul("plain".into()), "plain");
        assert_eq!(without_nul(String::new()), "");
    }
}
