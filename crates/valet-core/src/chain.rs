//! An error with its causes, each said once.
//!
//! Many errors put their source in their own message (`cannot read {path}:
//! {source}`) and also return it from `source()`; printing the chain naively
//! (anyhow's `{:#}`) then repeats the same text once per level. [`Chain`]
//! prints a cause only when the text already printed does not contain it.

use std::error::Error;
use std::fmt;

/// Displays an error and the causes its message does not already carry.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !text.is_empty() && !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            cause = c.source();
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    enum Leaf {
        #[error("permission denied")]
        Denied,
    }

    #[derive(Debug, thiserror::Error)]
    enum Mid {
        // The source is in the message and is the error's source.
        #[error("cannot read /etc/tls.crt: {source}")]
        Read { source: Leaf },
        // The source is only the error's source.
        #[error("certificate not loaded")]
        Opaque(#[source] Leaf),
    }

    #[derive(Debug, thiserror::Error)]
    enum Top {
        #[error("{0}")]
        Tls(#[from] Mid),
    }

    #[test]
    fn a_source_repeated_in_the_message_is_said_once() {
        let e = Top::Tls(Mid::Read {
            source: Leaf::Denied,
        });
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read /etc/tls.crt: permission denied"
        );
    }

    #[test]
    fn a_source_missing_from_the_message_is_appended() {
        let e = Top::Tls(Mid::Opaque(Leaf::Denied));
        assert_eq!(
            Chain(&e).to_string(),
            "certificate not loaded: permission denied"
        );
    }
}
