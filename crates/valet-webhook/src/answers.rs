//! Answers already given, for the next replica of the same pod.
//!
//! A controller that scales up sends the API server many pods that are the
//! same object byte for byte: a ReplicaSet's pods carry `generateName`, not
//! a name (the name, uid and creation time are set after admission), the
//! same labels, owner and spec, and `managedFields` times to the second. The
//! reviews differ only in their uid. Deciding such a pod again costs more
//! than the rest of the request (decode, patch, base64); comparing its bytes
//! to one already decided costs a memcmp.
//!
//! An entry holds the object's exact JSON text and the answer encoded
//! without its uid. It is used only when everything else the answer depends
//! on is unchanged:
//! - the review is a Pod CREATE with the same `request.namespace` and the
//!   same `apiVersion` (echoed in the answer);
//! - the ServiceAccount lookup finds the very configuration the answer was
//!   decided with (the entry holds that `Arc`, so its address cannot be
//!   reused: an annotation change makes a new one and the entry is dead);
//! - the SA does not use container credentials (their token lifetime is
//!   drawn at random per pod), and the lookup did not fail.
//!
//! The settings are fixed for the life of the process. Anything else is
//! decided afresh (and may replace the entry).
//!
//! An answer is kept the second time its object's first bytes are seen
//! (a small table of their hashes remembers the first): a stream of pods
//! that all differ (StatefulSets, DaemonSets, bare pods) costs a hash and
//! a store per pod, not a copy of each. Bounded by entries and bytes: when
//! either bound is reached the table is emptied, which a burst of replicas
//! refills at once; objects under [`MIN_OBJECT`] or over [`MAX_OBJECT`]
//! bytes are not kept.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use valet_core::admission::{UidlessAnswer, Verdict};
use valet_core::identity::SaConfig;

/// Entries are found by a hash of the object's first bytes (its length is
/// not known before it is read); shorter objects are cheap to decide.
pub const MIN_OBJECT: usize = 256;
/// A pod this big is not a replica burst's; copying it is not worth it.
pub const MAX_OBJECT: usize = 256 * 1024;
/// Pods that share their first bytes (same template, other `managedFields`
/// times) share a bucket; this bounds the compares per review.
const BUCKET: usize = 4;
/// Slots of the table of first sightings.
const SEEN: usize = 1024;

/// One answer, and what it was decided from.
pub struct Answer {
    /// The pod object's JSON text, as the review carried it.
    pub object: Box<[u8]>,
    pub api_version: Box<str>,
    pub request_namespace: Option<Box<str>>,
    /// The pod's namespace and ServiceAccount, as the lookup was made.
    pub namespace: Box<str>,
    pub service_account: Box<str>,
    /// What that lookup found.
    pub config: Arc<SaConfig>,
    pub answer: UidlessAnswer,
    pub verdict: Verdict,
    /// For the debug log line.
    pub pod: Box<str>,
    pub warnings: usize,
}

impl Answer {
    /// Whether this answer is for a review with this version and request
    /// namespace (the object is the same; the caller checked it is a Pod
    /// CREATE).
    pub fn answers(&self, api_version: &str, request_namespace: Option<&str>) -> bool {
        *self.api_version == *api_version && self.request_namespace.as_deref() == request_namespace
    }

    /// Whether it was decided with `config`, what the SA lookup finds now.
    pub fn decided_with(&self, config: &Arc<SaConfig>) -> bool {
        Arc::ptr_eq(&self.config, config)
    }

    fn bytes(&self) -> usize {
        self.object.len() + self.answer.len() + self.pod.len() + 256
    }
}

pub struct Answers {
    max_entries: usize,
    max_bytes: usize,
    hasher: foldhash::fast::RandomState,
    table: RwLock<Table>,
    /// The hash of the first bytes of objects seen once, by hash.
    seen: Box<[AtomicU64]>,
}

/// What [`Answers::find`] found.
pub struct Found {
    /// The answer for the object the review continues with, and the
    /// object's length.
    pub answer: Option<(usize, Arc<Answer>)>,
    /// Not found, but an object with the same first bytes was seen before:
    /// this one's answer is worth keeping.
    pub seen_before: bool,
}

#[derive(Default)]
struct Table {
    buckets: HashMap<u64, Vec<Arc<Answer>>>,
    entries: usize,
    bytes: usize,
}

impl Answers {
    /// At most `max_entries` answers (0: keep none) and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Answers {
            max_entries,
            max_bytes,
            hasher: foldhash::fast::RandomState::default(),
            table: RwLock::new(Table::default()),
            seen: (0..SEEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn key(&self, object: &[u8]) -> u64 {
        self.hasher.hash_one(&object[..MIN_OBJECT])
    }

    /// The answer whose object the review continues with at `rest` (the
    /// body from the object's first byte).
    pub fn find(&self, rest: &[u8]) -> Found {
        let mut found = Found {
            answer: None,
            seen_before: false,
        };
        if self.max_entries == 0 || rest.len() < MIN_OBJECT {
            return found;
        }
        let key = self.key(rest);
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            found.answer = table.buckets.get(&key).and_then(|bucket| {
                bucket
                    .iter()
                    .find(|a| rest.starts_with(&a.object))
                    .map(|a| (a.object.len(), a.clone()))
            });
        }
        if found.answer.is_none() {
            let slot = &self.seen[key as usize % SEEN];
            found.seen_before = slot.swap(key, Ordering::Relaxed) == key;
        }
        found
    }

    /// Whether [`Answers::keep`] keeps an object of this length.
    pub fn would_keep(&self, len: usize) -> bool {
        self.max_entries > 0 && (MIN_OBJECT..=MAX_OBJECT).contains(&len)
    }

    /// Keeps an answer (replacing one for the same object).
    pub fn keep(&self, answer: Answer) {
        if !self.would_keep(answer.object.len()) {
            return;
        }
        let answer = Arc::new(answer);
        let key = self.key(&answer.object);
        let size = answer.bytes();
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let table = &mut *guard;
        if table.entries + 1 > self.max_entries || table.bytes + size > self.max_bytes {
            *table = Table::default();
        }
        let bucket = table.buckets.entry(key).or_default();
        let mut freed = 0;
        if let Some(i) = bucket.iter().position(|a| a.object == answer.object) {
            freed += bucket.remove(i).bytes();
        } else if bucket.len() == BUCKET {
            freed += bucket.remove(0).bytes();
        } else {
            table.entries += 1;
        }
        bucket.push(answer);
        table.bytes = table.bytes + size - freed;
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.table.read().unwrap_or_else(|p| p.into_inner()).entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valet_core::admission::Response;
    use valet_core::mutate::Outcome;

    fn object(tag: &str, len: usize) -> Vec<u8> {
        let mut o = format!("{{\"metadata\":{{\"generateName\":\"app-\"}},\"pad\":\"{tag}");
        while o.len() < len - 2 {
            o.push('x');
        }
        o.push_str("\"}");
        o.into_bytes()
    }

    fn decided(object: &[u8], config: &Arc<SaConfig>) -> Answer {
        let response = Response {
            api_version: "admission.k8s.io/v1",
            uid: "",
            allowed: true,
            denial: None,
            patch: Some(b"[]".to_vec()),
            warnings: Vec::new(),
        };
        Answer {
            object: object.into(),
            api_version: "admission.k8s.io/v1".into(),
            request_namespace: Some("team-a".into()),
            namespace: "team-a".into(),
            service_account: "app".into(),
            config: config.clone(),
            answer: UidlessAnswer::encode(&response).1,
            verdict: Verdict::Decided(Outcome::Mutated),
            pod: "app-".into(),
            warnings: 0,
        }
    }

    /// A review's body from its object on: the object, then more fields.
    fn rest(object: &[u8]) -> Vec<u8> {
        [object, b",\"oldObject\":null}}"].concat()
    }

    #[test]
    fn finds_the_same_object_only() {
        let answers = Answers::new(16, 1 << 20);
        let config = Arc::new(SaConfig::default());
        let a = object("a", 1000);
        assert!(answers.find(&rest(&a)).answer.is_none());
        answers.keep(decided(&a, &config));
        let (len, hit) = answers.find(&rest(&a)).answer.expect("kept");
        assert_eq!(len, a.len());
        assert!(hit.answers("admission.k8s.io/v1", Some("team-a")));
        assert!(!hit.answers("admission.k8s.io/v1", Some("team-b")));
        assert!(!hit.answers("admission.k8s.io/v1", None));
        assert!(!hit.answers("admission.k8s.io/v1beta1", Some("team-a")));
        assert!(hit.decided_with(&config));
        // An equal configuration in another allocation is a change.
        assert!(!hit.decided_with(&Arc::new(SaConfig::default())));

        // Same first bytes, other end: same bucket, no match.
        let mut b = a.clone();
        let at = b.len() - 3;
        b[at] = b'y';
        assert!(answers.find(&rest(&b)).answer.is_none());
        // A body that stops inside the object is not that object.
        assert!(answers.find(&a[..a.len() - 1]).answer.is_none());
        answers.keep(decided(&b, &config));
        assert_eq!(answers.find(&rest(&b)).answer.unwrap().0, b.len());
        assert_eq!(answers.find(&rest(&a)).answer.unwrap().0, a.len());
        assert_eq!(answers.len(), 2);
        // Kept again: replaced, not doubled.
        answers.keep(decided(&b, &config));
        assert_eq!(answers.len(), 2);
    }

    #[test]
    fn short_and_huge_objects_are_not_kept() {
        let answers = Answers::new(16, 1 << 30);
        let config = Arc::new(SaConfig::default());
        for len in [MIN_OBJECT - 1, MAX_OBJECT + 1] {
            let o = object("a", len);
            answers.keep(decided(&o, &config));
            assert!(answers.find(&rest(&o)).answer.is_none(), "{len}");
        }
        assert!(answers.is_empty());
        let off = Answers::new(0, 1 << 30);
        let o = object("a", 1000);
        off.keep(decided(&o, &config));
        assert!(off.find(&rest(&o)).answer.is_none());
    }

    #[test]
    fn bounded_by_entries_bytes_and_bucket() {
        let config = Arc::new(SaConfig::default());
        let objects: Vec<Vec<u8>> = (0..20).map(|i| object(&format!("{i:03}"), 1000)).collect();
        let answers = Answers::new(8, 1 << 30);
        for o in &objects {
            answers.keep(decided(o, &config));
            assert!(answers.len() <= 8);
        }
        assert!(
            answers.find(&rest(&objects[19])).answer.is_some(),
            "the newest is kept"
        );

        let answers = Answers::new(1000, 5000);
        for o in &objects {
            answers.keep(decided(o, &config));
            let table = answers.table.read().unwrap();
            assert!(table.bytes <= 5000, "{}", table.bytes);
        }
        assert!(answers.find(&rest(&objects[19])).answer.is_some());

        // Objects sharing their first MIN_OBJECT bytes share one bucket.
        let answers = Answers::new(1000, 1 << 30);
        let same_start: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let mut o = object("", 1000);
                let at = o.len() - 3;
                o[at] = b'0' + i;
                o
            })
            .collect();
        for o in &same_start {
            answers.keep(decided(o, &config));
        }
        assert_eq!(answers.len(), BUCKET);
        assert!(answers.find(&rest(&same_start[9])).answer.is_some());
        assert!(answers.find(&rest(&same_start[0])).answer.is_none());
    }

    #[test]
    fn worth_keeping_from_the_second_sighting() {
        let answers = Answers::new(16, 1 << 20);
        let a = object("a", 1000);
        let b = object("b", 1000);
        assert!(!answers.find(&rest(&a)).seen_before);
        assert!(!answers.find(&rest(&b)).seen_before);
        assert!(answers.find(&rest(&a)).seen_before);
        assert!(answers.find(&rest(&b)).seen_before);
        // Too short to be kept: never reported.
        let short = object("a", MIN_OBJECT - 1);
        assert!(!answers.find(&short).seen_before);
        assert!(!answers.find(&short).seen_before);
        let off = Answers::new(0, 1 << 20);
        assert!(!off.find(&rest(&a)).seen_before);
        assert!(!off.find(&rest(&a)).seen_before);
    }
}
