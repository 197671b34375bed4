//! The strings of written events, kept for the writer to make the next events with.
//!
//! The writer thread makes an event's strings (its id, timestamp, the caller's fields, the
//! denial's words) from a request's record, and used to free them all once the batch was
//! written. A batch frees dozens of strings of a few sizes at once, more than the
//! allocator's per-thread cache holds, so each string took the allocator's slow paths
//! both ways: a sixth of the writer's time under load. [`Spare`] keeps them instead. After
//! a batch is written its events give their strings and lists back, and the next events
//! take them, cleared, before anything is allocated. What an event says does not depend on
//! which string it was made in: a string is cleared before it is filled, and a list is
//! empty when it is taken.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use super::AuditEvent;

/// The capacities a new string is made with, by the length it must hold: a string kept
/// in class `i` (its capacity at least `CLASSES[i]`) holds any value of that class or a
/// smaller one without growing.
const CLASSES: [usize; 4] = [32, 64, 128, 256];

/// The most strings kept in each class: the strings of a whole batch
/// ([`MAX_BATCH`](super::pipeline::MAX_BATCH) events: most of an event's strings are short,
/// a few are 64-byte digests and ids, one may be a denial's words).
const MAX_STRINGS_PER_CLASS: [usize; CLASSES.len()] = [12 * 1024, 4 * 1024, 2 * 1024, 1024];

/// The most lists kept (a batch's scopes and delegation chains).
const MAX_LISTS: usize = 4 * 1024;

/// A list that grew beyond this many items (a token with dozens of scopes) is freed, not
/// kept, so kept lists stay under two megabytes.
const MAX_KEPT_LIST_CAPACITY: usize = 16;

/// A string that grew beyond this many bytes (a long denial, say) is freed, not kept, so
/// kept strings stay under three megabytes.
const MAX_KEPT_CAPACITY: usize = 2 * CLASSES[CLASSES.len() - 1];

/// Strings and lists of events already written, for the next events.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    /// By class of capacity (see [`CLASSES`]).
    strings: [Vec<String>; CLASSES.len()],
    lists: Vec<Vec<String>>,
}

impl Spare {
    /// A string holding `value`.
    pub(crate) fn text(&mut self, value: &str) -> String {
        let mut text = self.room_for(value.len());
        text.push_str(value);
        text
    }

    /// `value` as a string: the one it holds, or one from the spare for a borrowed value.
    pub(crate) fn owned(&mut self, value: Cow<'_, str>) -> String {
        match value {
            Cow::Borrowed(value) => self.text(value),
            Cow::Owned(value) => value,
        }
    }

    /// A string holding what `value` displays as, which is usually at most `about` bytes.
    pub(crate) fn display(&mut self, value: impl fmt::Display, about: usize) -> String {
        let mut text = self.room_for(about);
        let _ = write!(text, "{value}");
        text
    }

    /// An empty string with room for `len` bytes: a kept one of the smallest class that
    /// has one, else a new one of the class's capacity.
    fn room_for(&mut self, len: usize) -> String {
        let Some(class) = CLASSES.iter().position(|&c| len <= c) else {
            return String::with_capacity(len);
        };
        for kept in &mut self.strings[class..] {
            if let Some(mut text) = kept.pop() {
                text.clear();
                return text;
            }
        }
        String::with_capacity(CLASSES[class])
    }

    /// A list holding `values`.
    pub(crate) fn list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut list = self.lists.pop().unwrap_or_default();
        list.clear();
        for value in values {
            let text = self.text(value);
            list.push(text);
        }
        list
    }

    /// Keeps `text` for a later event, if there is room: in the largest class its
    /// capacity reaches (one below the smallest is freed).
    pub(crate) fn keep_text(&mut self, text: String) {
        let capacity = text.capacity();
        if capacity > MAX_KEPT_CAPACITY {
            return;
        }
        if let Some(class) = CLASSES.iter().rposition(|&c| capacity >= c)
            && self.strings[class].len() < MAX_STRINGS_PER_CLASS[class]
        {
            self.strings[class].push(text);
        }
    }

    fn keep_optional(&mut self, text: Option<String>) {
        if let Some(text) = text {
            self.keep_text(text);
        }
    }

    fn keep_list(&mut self, mut list: Vec<String>) {
        for text in list.drain(..) {
            self.keep_text(text);
        }
        if self.lists.len() < MAX_LISTS && (1..=MAX_KEPT_LIST_CAPACITY).contains(&list.capacity()) {
            self.lists.push(list);
        }
    }

    /// Keeps the strings and lists of a written `event`.
    pub(crate) fn keep(&mut self, event: AuditEvent) {
        // Every field named (no `..`): a new string field does not compile until it is
        // kept here or said to need nothing.
        let AuditEvent {
            schema_version: _,
            id,
            timestamp,
            kind: _,
            decision: _,
            reason,
            reason_code,
            outcome: _,
            agent,
            subject,
            client_id,
            delegation_chain,
            issuer,
            token_id,
            dpop_jkt,
            scopes_granted,
            scopes_required,
            policies,
            target,
            method,
            arguments_hmac,
            arguments: _,
            error_code: _,
            duration_ms: _,
            session_id,
            request_id,
            transport,
            remote_addr,
            intent_id,
            truncated,
            prev_hash,
        } = event;
        self.keep_text(id);
        self.keep_text(timestamp);
        for text in [
            reason,
            reason_code,
            agent,
            subject,
            client_id,
            issuer,
            token_id,
            dpop_jkt,
            target,
            method,
            arguments_hmac,
            session_id,
            request_id,
            transport,
            remote_addr,
            intent_id,
            prev_hash,
        ] {
            self.keep_optional(text);
        }
        for list in [
            delegation_chain,
            scopes_granted,
            scopes_required,
            policies,
            truncated,
        ] {
            self.keep_list(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_string_is_cleared_before_it_is_filled() {
        let mut spare = Spare::default();
        spare.keep_text(String::with_capacity(40) + "a previous value");
        assert_eq!(spare.text("new"), "new");
        spare.keep_list(vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(spare.list(["z"]), ["z"]);
        spare.keep_text(String::with_capacity(40) + "12345");
        assert_eq!(spare.display(7, 2), "7");
    }

    #[test]
    fn a_string_comes_from_a_class_that_holds_it_without_growing() {
        let mut spare = Spare::default();
        let small = String::with_capacity(32);
        let large = String::with_capacity(128);
        let large_at = large.as_ptr();
        spare.keep_text(small);
        spare.keep_text(large);
        // 100 bytes: not the 32-byte string, the 128-byte one.
        let text = spare.text(&"x".repeat(100));
        assert_eq!(text.as_ptr(), large_at);
        assert_eq!(text.capacity(), 128);
        // A new string is made at its class's capacity, and kept in that class.
        let made = spare.text(&"y".repeat(40));
        assert_eq!(made.capacity(), 64);
        // Smaller than the smallest class: freed.
        spare.keep_text(String::with_capacity(8));
        assert_eq!(spare.strings.iter().map(Vec::len).sum::<usize>(), 1);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let mut spare = Spare::default();
        spare.keep_text(String::with_capacity(MAX_KEPT_CAPACITY + 1));
        assert!(spare.strings.iter().all(Vec::is_empty));
        for _ in 0..MAX_STRINGS_PER_CLASS[0] + 10 {
            spare.keep_text(String::with_capacity(32));
        }
        assert_eq!(spare.strings[0].len(), MAX_STRINGS_PER_CLASS[0]);
        spare.keep_list(Vec::with_capacity(MAX_KEPT_LIST_CAPACITY + 1));
        assert!(spare.lists.is_empty());
        for _ in 0..MAX_LISTS + 10 {
            spare.keep_list(Vec::with_capacity(1));
        }
        assert_eq!(spare.lists.len(), MAX_LISTS);
    }
}
