//! Counting and fault injection for IAM calls, as an SDK interceptor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_iam::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextMut,
    BeforeSerializationInterceptorContextRef,
};
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_iam::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::body::SdkBody;

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Throttling,
    AccessDenied,
}

#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    /// HTTP attempts still to fail; `None` = until cleared.
    remaining: Option<u32>,
}

/// Counts IAM operations (not retried attempts) and HTTP attempts; holds the armed fault.
#[derive(Debug, Default)]
pub struct IamProbe {
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default, Clone)]
struct ProbeState {
    ops: BTreeMap<String, u64>,
    attempts: u64,
    /// HTTP attempts IAM answered with a throttling code, by operation
    /// (retried ones included: the SDK retries throttles by itself).
    throttled: BTreeMap<String, u64>,
    fault: Option<Fault>,
}

/// A snapshot of the counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IamCounts {
    pub ops: BTreeMap<String, u64>,
    pub attempts: u64,
}

impl IamCounts {
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
    pub fn since(&self, earlier: &IamCounts) -> IamCounts {
        let ops = self
            .ops
            .iter()
            .map(|(op, n)| (op.clone(), n - earlier.ops.get(op).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        IamCounts {
            ops,
            attempts: self.attempts - earlier.attempts,
        }
    }
}

/// Operations that change IAM state.
pub fn is_write(op: &str) -> bool {
    [
        "Create", "Put", "Update", "Delete", "Tag", "Untag", "Add", "Remove", "Attach", "Detach",
        "Set",
    ]
    .iter()
    .any(|p| op.starts_with(p))
}

impl IamProbe {
    /// Throttled HTTP attempts by operation.
    pub fn throttled(&self) -> BTreeMap<String, u64> {
        self.lock().throttled.clone()
    }
    pub fn counts(&self) -> IamCounts {
        let s = self.lock();
        IamCounts {
            ops: s.ops.clone(),
            attempts: s.attempts,
        }
    }
    /// Fails the next `attempts` HTTP attempts (`None`: every one until [`IamProbe::clear`]).
    pub fn inject(&self, kind: FaultKind, attempts: Option<u32>) {
        self.lock().fault = Some(Fault {
            kind,
            remaining: attempts,
        });
    }
    pub fn clear(&self) {
        self.lock().fault = None;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        // A panic while holding this lock cannot leave the counters inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn take_fault(&self) -> Option<FaultKind> {
        let mut s = self.lock();
        s.attempts += 1;
        let fault = s.fault.as_mut()?;
        let kind = fault.kind;
        match &mut fault.remaining {
            Some(0) => {
                s.fault = None;
                return None;
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(kind)
    }
}

#[derive(Debug)]
pub(crate) struct ProbeInterceptor(pub(crate) Arc<IamProbe>);

impl Intercept for ProbeInterceptor {
    fn name(&self) -> &'static str {
        "storage-valet-iam-probe"
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
        *self.0.lock().ops.entry(op).or_default() += 1;
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = ctx.response();
        if response.status().is_success() {
            return Ok(());
        }
        let throttled = response
            .body()
            .bytes()
            .and_then(valet_aws::throttle_code_in_body);
        if throttled.is_some() {
            let op = cfg
                .load::<Metadata>()
                .map(|m| m.name().to_string())
                .unwrap_or_default();
            *self.0.lock().throttled.entry(op).or_default() += 1;
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(kind) = self.0.take_fault() else {
            return Ok(());
        };
        let (status, code, message) = match kind {
            FaultKind::Throttling => (400u16, "Throttling", "Rate exceeded"),
            FaultKind::AccessDenied => (
                403u16,
                "AccessDenied",
                "injected: not authorized to perform this action",
            ),
        };
        let body = format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
        );
        let status = status.try_into()?;
        let mut resp = aws_smithy_runtime_api::http::Response::new(status, SdkBody::from(body));
        resp.headers_mut().insert("content-type", "text/xml");
        *ctx.response_mut() = resp;
        Ok(())
    }
}
