//! The records and metadata writes a channel's transitions queue for the writer, shipped
//! before the channel's lock is released ([`super::Chan::take_job`]).
//!
//! Allocated only while something is queued: an idle channel holds one pointer, not three
//! empty vectors (issue #14: memory per idle channel).

use super::super::meta::MetaWrite;
use super::super::writer::Rec;
use super::Tag;

#[derive(Default)]
pub(super) struct Outbox(Option<Box<Queued>>);

/// What is queued: log records with what each one is for, and metadata writes.
#[derive(Default)]
pub(super) struct Queued {
    pub recs: Vec<Rec>,
    pub tags: Vec<Tag>,
    pub meta: Vec<MetaWrite>,
}

impl Outbox {
    fn queued(&mut self) -> &mut Queued {
        self.0.get_or_insert_with(Box::default)
    }

    /// Queues a log record and what it is for.
    pub fn push(&mut self, rec: Rec, tag: Tag) {
        let q = self.queued();
        q.recs.push(rec);
        q.tags.push(tag);
    }

    /// Queues a metadata write.
    pub fn push_meta(&mut self, write: MetaWrite) {
        self.queued().meta.push(write);
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Everything queued, leaving nothing.
    pub fn take(&mut self) -> Queued {
        self.0.take().map(|q| *q).unwrap_or_default()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}
