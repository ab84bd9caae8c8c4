//! Counts every AWS operation a client makes (not retried attempts), as an
//! SDK interceptor: the steady state must cost zero S3 writes, and the tests
//! and the benchmark prove it by counting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Operation name -> calls.
#[derive(Debug, Default)]
pub struct CallProbe {
    ops: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of the counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallCounts {
    pub ops: BTreeMap<String, u64>,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.ops.values().sum()
    }
    pub fn writes(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(op, _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }
    pub fn reads(&self) -> u64 {
        self.total() - self.writes()
    }
    /// Counts since `earlier`.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts {
            ops: self
                .ops
                .iter()
                .map(|(op, n)| (op.clone(), n - earlier.ops.get(op).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// Operations that change S3 state.
pub fn is_write(op: &str) -> bool {
    ["Create", "Put", "Delete", "Update", "Restore"]
        .iter()
        .any(|p| op.starts_with(p))
}

impl CallProbe {
    pub fn counts(&self) -> CallCounts {
        CallCounts {
            ops: self.lock().clone(),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic while holding this lock cannot leave a counter half-written.
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The interceptor to add to a client's config.
#[derive(Debug, Clone)]
pub struct ProbeInterceptor(pub Arc<CallProbe>);

impl Intercept for ProbeInterceptor {
    fn name(&self) -> &'static str {
        "storage-valet-call-probe"
    }

    // Not read_before_execution: client-level interceptors run that hook
    // before the operation's metadata is in the config bag.
    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        *self.0.lock().entry(op).or_default() += 1;
        Ok(())
    }
}
