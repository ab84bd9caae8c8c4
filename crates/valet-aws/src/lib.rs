//! How storage-valet reports a failed AWS call, the same way everywhere
//! (broker, buckets, trust): the AWS error code and message as AWS sent
//! them (`AccessDenied: User ... is not authorized ...`), never a bare
//! `Unknown`; and which codes mean throttling.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The error codes AWS services answer when they throttle a caller (IAM
/// and STS `Throttling`, JSON services `ThrottlingException`, EC2-style
/// `RequestLimitExceeded`, S3 `SlowDown`).
pub const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "SlowDown",
];

pub fn is_throttle_code(code: &str) -> bool {
    THROTTLE_CODES.contains(&code)
}

/// The throttling code in a raw XML error body (IAM, STS and S3 speak
/// XML), for counting throttled attempts the SDK retries by itself.
pub fn throttle_code_in_body(body: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(body).ok()?;
    THROTTLE_CODES
        .iter()
        .find(|c| text.contains(&format!("<Code>{c}</Code>")))
        .copied()
}

/// A failed call as AWS described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsErrorText {
    /// AWS's error code; without one, what happened instead (`HTTP 503`,
    /// `Unreachable`, `Timeout`, `InvalidResponse`, `InvalidRequest`).
    pub code: String,
    /// AWS's message; without one, the SDK's whole error chain.
    pub message: String,
}

impl AwsErrorText {
    pub fn of<E>(err: &SdkError<E, Response>) -> AwsErrorText
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let chain = || causes(err);
        let code = match err {
            SdkError::DispatchFailure(_) => "Unreachable".to_string(),
            SdkError::TimeoutError(_) => "Timeout".to_string(),
            SdkError::ConstructionFailure(_) => "InvalidRequest".to_string(),
            SdkError::ResponseError(r) => match r.raw().status().as_u16() {
                200..=299 => "InvalidResponse".to_string(),
                status => format!("HTTP {status}"),
            },
            SdkError::ServiceError(s) => match err.code() {
                Some(code) => code.to_string(),
                None => format!("HTTP {}", s.raw().status().as_u16()),
            },
            _ => err.code().unwrap_or("Error").to_string(),
        };
        let message = match err.message() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => chain(),
        };
        AwsErrorText { code, message }
    }

    pub fn is_throttle(&self) -> bool {
        is_throttle_code(&self.code)
    }
}

/// The error and its sources, each said once: the SDK's own rendering
/// (`DisplayErrorContext`) ends with the whole chain's Debug form, raw HTTP
/// responses included, which buries the one line that matters (for a
/// machine without credentials: "IMDS is disabled ...").
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // A wrapper often repeats its source's text; keep the new part only.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

impl std::fmt::Display for AwsErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_cause_is_said_once_and_no_debug_dump() {
        let imds = Layer("IMDS is disabled", None);
        let provider = Layer(
            "an error occurred while loading credentials",
            Some(Box::new(imds)),
        );
        // A wrapper that repeats its source's text, as the SDK's do.
        let repeat = Layer(
            "an error occurred while loading credentials",
            Some(Box::new(provider)),
        );
        let top = Layer("dispatch failure", Some(Box::new(repeat)));
        assert_eq!(
            causes(&top),
            "dispatch failure: an error occurred while loading credentials: IMDS is disabled"
        );
    }

    #[test]
    fn throttle_codes_in_an_xml_error_body() {
        let iam = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                    <Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert_eq!(throttle_code_in_body(iam), Some("Throttling"));
        let s3 = b"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>";
        assert_eq!(throttle_code_in_body(s3), Some("SlowDown"));
        let denied = b"<Error><Code>AccessDenied</Code></Error>";
        assert_eq!(throttle_code_in_body(denied), None);
        // A code that only starts like one is not one.
        assert_eq!(throttle_code_in_body(b"<Code>ThrottlingX</Code>"), None);
    }
}
