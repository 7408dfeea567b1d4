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

/// `text` with each NUL replaced by U+FFFD, the character that stands for
/// what text cannot show. Allocates only when there is one.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nul_becomes_a_replacement_character() {
        assert_eq!(without_nul("a\0b\0".into()), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(without_nul("plain".into()), "plain");
        assert_eq!(without_nul(String::new()), "");
    }
}
